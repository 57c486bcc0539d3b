"""The FC-CLIP segmentation node, a managed (lifecycle) node: converts, schedules, publishes.

Lifecycle: ``configure`` validates the parameters, loads the model and encodes the initial
vocabulary (failing with the reason, the node staying up and unconfigured); ``activate``
subscribes to the camera and starts the inference thread; ``deactivate`` stops processing
without unloading; ``cleanup`` frees the model; ``shutdown`` works from every state. With the
``autostart`` parameter (default true) the node configures and activates by itself.

Threads: the executor runs the image callback (which only drops the message into the
latest-frame slot), the diagnostics timer, the parameter services and, in a reentrant group of
their own, the lifecycle services, so ``get_state`` and parameter calls answer while
``configure`` loads the model. ``~/set_vocabulary`` requests are queued and run in order by a
thread of their own (the text encoder takes a while and must not hold up frames). One worker
thread converts and segments the newest frame and publishes the outputs.

Run: ``ros2 run fcclip_ros segment_node`` or ``fcclip-segment-node`` (pip-only set-up), with
``--ros-args --params-file config/segment.yaml`` and remappings such as ``-r image:=/camera/image_raw``.
"""
from __future__ import annotations

import gc
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from lifecycle_msgs.msg import State
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage, Image

from fcclip_ros import conversions as conv
from fcclip_ros.load_progress import LoadProgress
from fcclip_ros.model_setup import StartupError, inference_threads, load_predictor
from fcclip_ros.node_config import (PARAMETERS, SPECS, VOCABULARY_PARAMETERS, ConfigError, NodeConfig,
                                    parse_config, runtime_problems)
from fcclip_ros.outputs import FrameOutputs, VocabularyOutputs, frame_tasks, import_vision_msgs, qos_profile
from fcclip_ros.spatial_outputs import SpatialOutputs
from fcclip_ros.request_queue import RequestQueue
from fcclip_ros.srv import SetVocabulary
from fcclip_ros.vocabulary_source import RequestLimits, as_request, initial_vocabulary, parse_request, save_state
from fcclip_ros.worker import FrameStats, InferenceWorker, StatsSnapshot

NODE_NAME = "segment_node"
LOG_THROTTLE_S = 5.0
STOP_TIMEOUT_S = 10.0  # how long deactivate/shutdown wait for a frame in the model or a vocabulary encoding
TRANSITION_WAIT_S = 120.0  # how long a shutdown waits for a running transition (a model load) to end
# The service's DDS history: requests are taken off it at once, so it only needs to hold what
# arrives between two executor wake-ups; the node's own queue (vocabulary_queue_depth) bounds the rest.
SERVICE_QOS = QoSProfile(depth=1000)
_PRIMARY_STATES = {State.PRIMARY_STATE_UNCONFIGURED, State.PRIMARY_STATE_INACTIVE, State.PRIMARY_STATE_ACTIVE,
                   State.PRIMARY_STATE_FINALIZED}


@dataclass
class PendingFrame:
    msg: Image | CompressedImage
    received: float  # time.monotonic() when the callback got it


@dataclass
class Loaded:
    """What ``configure`` creates and ``cleanup`` releases."""

    predictor: Any  # fcclip_core.predictor.Predictor
    weights: str  # where the weights came from; "" when untrained
    outputs: FrameOutputs
    vocabulary_outputs: VocabularyOutputs
    spatial: SpatialOutputs  # depth in; 3D and track outputs
    service: Any  # the ~/set_vocabulary service
    requests: RequestQueue
    limits: RequestLimits
    frame_limits: conv.FrameLimits
    defaults: dict[str, Any]  # the model config's own run-time settings (what a negative/0 parameter means)


class SegmentNode(LifecycleNodeMixin, Node):
    def __init__(self, **node_kwargs: Any) -> None:
        Node.__init__(self, NODE_NAME, **node_kwargs)
        # Lifecycle services in a reentrant group: get_state answers while configure loads.
        LifecycleNodeMixin.__init__(self, callback_group=ReentrantCallbackGroup())
        self._local = threading.local()  # marks parameter updates made by the node itself
        self._declare_parameters()
        self.autostart = self.get_parameter("autostart").value is not False
        self.config: NodeConfig | None = None  # the validated parameters, once configured
        self._loaded: Loaded | None = None
        self._progress = LoadProgress()
        self._last_failure = ""  # why the last configure failed
        self._stats = FrameStats()
        self._last_snapshot: StatsSnapshot | None = None
        self._worker: InferenceWorker[PendingFrame] | None = None
        self._subscription: Any = None
        self._applied: NodeConfig | None = None  # the settings the predictor has (inference thread only)
        # Reentrant: an async rclpy callback holds its group until it is answered, so a mutually
        # exclusive group would leave every other request waiting in DDS instead of in the queue.
        self._vocabulary_group = ReentrantCallbackGroup()
        # Wakes the executor when a queued request is answered: rclpy resumes an awaiting service
        # callback only when its wait set wakes, and a Future set from another thread does not wake it.
        self._answered = self.create_guard_condition(lambda: None, callback_group=self._vocabulary_group)
        self._transitions = threading.Lock()  # autostart and shutdown never trigger transitions at once
        self._stopping = False
        self._loading: Any = None  # the predictor configure is encoding the initial vocabulary with
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # Diagnostics are not a lifecycle output: they say "unconfigured" or "loading" too.
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        period = self.get_parameter("diagnostics_period").value
        self.create_timer(period if isinstance(period, (int, float)) and period >= 0.05 else 1.0,
                          self._publish_diagnostics)

    # ------------------------------------------------------------------ parameters

    def _declare_parameters(self) -> None:
        for spec in PARAMETERS:
            read_only = not spec.runtime and spec.name not in VOCABULARY_PARAMETERS
            description = spec.description + ("" if spec.runtime or spec.name in VOCABULARY_PARAMETERS
                                              else " (read-only: set it at start)")
            self.declare_parameter(spec.name, spec.default,
                                   ParameterDescriptor(description=description, dynamic_typing=True,
                                                       read_only=read_only))

    def _parameter_values(self, changes: Sequence[Parameter] = ()) -> dict[str, Any]:
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        # Overrides that match no declared parameter are typos: report them instead of ignoring them.
        for name, parameter in getattr(self, "_parameter_overrides", {}).items():
            if name not in values:
                values[name] = parameter.value
        values.update({p.name: p.value for p in changes})
        return values

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        if getattr(self._local, "internal", False):
            return SetParametersResult(successful=True)
        vocabulary = [p.name for p in parameters if p.name in VOCABULARY_PARAMETERS]
        if vocabulary:
            return SetParametersResult(
                successful=False, reason=f"{', '.join(vocabulary)}: use ~/set_vocabulary to change the classes")
        fixed = [p.name for p in parameters if p.name in SPECS and not SPECS[p.name].runtime]
        if fixed:  # read_only parameters never get here; this covers any that are not
            return SetParametersResult(successful=False, reason=f"{', '.join(fixed)} cannot change at run time")
        problems = runtime_problems({p.name: p.value for p in parameters if p.name in SPECS})
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        if self.config is not None:
            updated = parse_config(self._parameter_values(parameters))
            # Only run-time fields change; the rest stays what the model was loaded with.
            runtime = {spec.name: getattr(updated, spec.name) for spec in PARAMETERS if spec.runtime}
            self.config = replace(self.config, **runtime)
            changed = ", ".join(f"{p.name}={p.value!r}" for p in parameters)
            self.get_logger().info(f"run-time parameters changed (from the next frame): {changed}")
        return SetParametersResult(successful=True)

    def _store_vocabulary_parameters(self, vocabulary: Any) -> None:
        """Mirror the current vocabulary in the parameters, so `ros2 param dump` can restore it."""
        classes, stuff = as_request(vocabulary)
        self._local.internal = True
        try:
            self.set_parameters([
                Parameter("vocabulary", Parameter.Type.STRING_ARRAY, classes),
                Parameter("vocabulary_stuff", Parameter.Type.STRING_ARRAY, stuff),
                Parameter("vocabulary_file", Parameter.Type.STRING, ""),
            ])
        finally:
            self._local.internal = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def lifecycle_state(self) -> str:
        return self._state_machine.current_state[1]

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._progress.begin(steps=3)
        try:
            self._loaded = self._configure()
        except (ConfigError, StartupError) as error:
            return self._configure_failed(str(error))
        except Exception as error:  # noqa: BLE001 - any other failure must also leave the node up
            return self._configure_failed(f"{type(error).__name__}: {error}")
        finally:
            self._progress.end()
        self._last_failure = ""
        loaded = self._loaded
        self.get_logger().info(f"configured: {_model_summary(loaded, self.config)}; activate to start processing")
        return TransitionCallbackReturn.SUCCESS

    def _configure_failed(self, reason: str) -> TransitionCallbackReturn:
        self._release()
        self._last_failure = reason
        if self._stopping:
            self.get_logger().info("configure stopped: the node is shutting down")
        else:
            self.get_logger().error(f"configure failed, the node stays unconfigured: {reason}")
        return TransitionCallbackReturn.FAILURE

    def _configure(self) -> Loaded:
        self._progress.step("checking the parameters and the initial vocabulary")
        config = parse_config(self._parameter_values())
        self.config = config
        limits = RequestLimits(config.max_classes, config.max_label_length)
        try:  # parsing is cheap: a bad vocabulary fails before the model is loaded
            vocabulary, source = initial_vocabulary(
                classes=config.vocabulary, stuff=config.vocabulary_stuff, vocabulary_file=config.vocabulary_file,
                state_file=config.vocabulary_state_file, limits=limits)
        except ValueError as error:
            raise ConfigError(f"invalid parameters:\n  - {error}") from error

        self._progress.step(f"loading model {config.model_config} on {config.device}")
        self.get_logger().info(f"loading model {config.model_config!r} on device {config.device!r} ...")
        loaded = load_predictor(
            config.model_config, config.weights, config.device, allow_untrained=config.allow_untrained,
            allow_download=config.allow_download, clip_weights=config.clip_weights,
            max_long_side=config.max_long_side, cpu_threads=config.cpu_threads,
            precision=config.precision, tf32=config.tf32)
        predictor = loaded.predictor  # thresholds and input size: the model's; _apply_settings sets ours
        self._loading = predictor  # a shutdown meanwhile aborts its text encoding
        if self._stopping:
            raise StartupError("shutdown requested while configuring")
        inference = predictor.model.config.inference
        defaults = {"object_mask_threshold": predictor.postprocess_config.object_mask_threshold,
                    "overlap_threshold": predictor.postprocess_config.overlap_threshold,
                    "ensemble_alpha": inference.ensemble_alpha, "ensemble_beta": inference.ensemble_beta,
                    "input_short_side": predictor.input_config.min_size_test or 0}
        predictor.text_cache.max_cached_names = config.text_cache_max_names
        if loaded.untrained:
            self.get_logger().warning(
                "NO WEIGHTS: running an UNTRAINED model with random weights; its masks are meaningless")
        self._progress.step(f"encoding the initial vocabulary ({len(vocabulary.entries)} classes, {source})")
        try:
            predictor.set_vocabulary(vocabulary)
        except Exception as error:  # noqa: BLE001 - any failure here means the node cannot run
            raise StartupError(f"could not encode the initial vocabulary ({source}): {error}") from error
        finally:
            self._loading = None

        vision_msgs = import_vision_msgs()
        if vision_msgs is None and config.publish_detections:
            self.get_logger().info("vision_msgs is not installed: ~/detections and ~/label_info are off")
        service = self.create_service(SetVocabulary, "~/set_vocabulary", self._on_set_vocabulary,
                                      qos_profile=SERVICE_QOS, callback_group=self._vocabulary_group)
        result = Loaded(predictor=predictor, weights=loaded.weights,
                        outputs=FrameOutputs(self, config, vision_msgs),
                        vocabulary_outputs=VocabularyOutputs(self, vision_msgs),
                        spatial=SpatialOutputs(self, config.spatial, qos_profile(config.output_qos), vision_msgs),
                        service=service,
                        requests=RequestQueue(config.vocabulary_queue_depth, name="fcclip-set-vocabulary"),
                        limits=limits, frame_limits=conv.FrameLimits(config.max_image_pixels, config.max_image_side,
                                                                     config.image_16bit_max),
                        defaults=defaults)
        self._apply_settings(result, config)
        self._stats = FrameStats(window=config.stats_window)
        self._loaded = result
        self._store_vocabulary_parameters(vocabulary)
        self._save_vocabulary(vocabulary, predictor.vocabulary_version)
        return result

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        loaded, config = self._loaded, self.config
        result = super().on_activate(state)  # enables the lifecycle publishers
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        loaded.vocabulary_outputs.publish(loaded.predictor.vocabulary, loaded.predictor.vocabulary_version)
        self._worker = InferenceWorker(self._process, self._stats, self._on_error)
        self._worker.start()
        image_qos = qos_profile(config.image_qos)
        loaded.spatial.subscribe(image_qos)
        frames = MutuallyExclusiveCallbackGroup()
        if config.image_transport == "compressed":
            self._subscription = self.create_subscription(
                CompressedImage, "image/compressed", self._on_frame, image_qos, callback_group=frames)
        else:
            self._subscription = self.create_subscription(Image, "image", self._on_frame, image_qos,
                                                          callback_group=frames)
        self.get_logger().info(
            f"ready: {_model_summary(loaded, config)}, input {self._subscription.topic_name} "
            f"({config.image_transport}, {config.image_qos.reliability}, depth {config.image_qos.depth})")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        stopped = self._stop_processing()
        if not stopped:
            self.get_logger().warning(f"a frame was still in the model after {STOP_TIMEOUT_S:g} s; "
                                      "its outputs will not be published")
        self.get_logger().info("deactivated: processing stopped, the model stays loaded")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        clean = self._release()
        self.get_logger().info("cleaned up: model released")
        return TransitionCallbackReturn.SUCCESS if clean else TransitionCallbackReturn.FAILURE

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        # Work still running after STOP_TIMEOUT_S (a frame in the model, a vocabulary being
        # encoded) is abandoned: it changes nothing that outlives the process (a saved
        # vocabulary file is always written whole), so the shutdown still counts as clean.
        finished = self._stop_processing()
        finished = self._release() and finished
        super().on_shutdown(state)
        if finished:
            self.get_logger().info("shut down")
        else:
            self.get_logger().warning(f"shut down; work still running after {STOP_TIMEOUT_S:g} s was abandoned")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured

    def _stop_processing(self) -> bool:
        """Unsubscribe and stop the inference thread; True when no frame was left in the model."""
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        if self._loaded is not None:
            self._loaded.spatial.unsubscribe()
        stopped = True
        if self._worker is not None:
            stopped = self._worker.stop(STOP_TIMEOUT_S)
            self._worker = None
        return stopped

    def _release(self) -> bool:
        """Free what configure made (model, publishers, service); True when no request was left running."""
        loaded, self._loaded = self._loaded, None
        clean = True
        if loaded is not None:
            loaded.predictor.text_cache.abort()  # a vocabulary being encoded stops at its next pass
            left, clean = loaded.requests.close(STOP_TIMEOUT_S)
            for job in left:
                job()  # they answer "node is not configured"
            self.destroy_service(loaded.service)
            loaded.outputs.destroy()
            loaded.vocabulary_outputs.destroy()
            loaded.spatial.destroy()
            device = loaded.predictor.device
            del loaded
            _free_memory(device)
        self.config = None
        self._applied = None
        return clean

    # ------------------------------------------------------------------ frames

    def _on_frame(self, msg: Image | CompressedImage) -> None:
        worker, loaded = self._worker, self._loaded
        if worker is not None:
            if loaded is not None:
                loaded.spatial.expect(msg.header)  # hold its depth aside while it waits
            worker.submit(PendingFrame(msg, time.monotonic()))

    def _process(self, frame: PendingFrame) -> None:
        loaded, config = self._loaded, self.config
        if loaded is None or config is None:
            return
        self._apply_settings(loaded, config)
        try:
            if isinstance(frame.msg, CompressedImage):
                rgb = conv.compressed_to_rgb(frame.msg, loaded.frame_limits)
            else:
                rgb = conv.image_to_rgb(frame.msg, loaded.frame_limits)
        except conv.FrameError as error:
            self._stats.count_invalid(str(error))
            self.get_logger().warning(f"skipping frame: {error}", throttle_duration_sec=LOG_THROTTLE_S)
            return
        started = time.monotonic()
        result = loaded.predictor.predict(rgb, tasks=frame_tasks(config))
        inference = time.monotonic() - started
        worker = self._worker
        if worker is None or worker.stopping:
            return
        spatial = loaded.spatial.process(result, frame.msg.header)
        loaded.outputs.publish(result, rgb, frame.msg.header, config, spatial.tracks, spatial.geometry)
        self._stats.count_processed(time.monotonic() - frame.received, inference)

    def _apply_settings(self, loaded: Loaded, config: NodeConfig) -> None:
        """Hand changed run-time parameters to the model, between frames (inference thread)."""
        if config is self._applied:
            return
        import torch

        settings = {name: _or(getattr(config, name), default) for name, default in loaded.defaults.items()}
        loaded.predictor.retune(**settings)
        if config.cpu_threads and torch.get_num_threads() != config.cpu_threads:
            torch.set_num_threads(config.cpu_threads)
        self._applied = config

    def _on_error(self, error: Exception) -> None:
        reason = f"{type(error).__name__}: {error}"
        self._stats.count_failed(reason)
        self.get_logger().error(f"frame failed: {reason}", throttle_duration_sec=LOG_THROTTLE_S)

    # ------------------------------------------------------------------ vocabulary

    async def _on_set_vocabulary(self, request: SetVocabulary.Request,
                                 response: SetVocabulary.Response) -> SetVocabulary.Response:
        """Queue the request (answered in arrival order) or answer "busy" when the queue is full."""
        loaded = self._loaded
        if loaded is None:
            return _refused(response, 0, "node is not configured")
        done = self.executor.create_future()

        def job() -> None:
            try:
                done.set_result(self._set_vocabulary(request, response))
            except Exception as error:  # noqa: BLE001 - the caller must get an answer whatever happens
                done.set_result(_refused(response, 0, f"failed, nothing changed: {error}"))
            self._answered.trigger()

        if not loaded.requests.submit(job):
            return _refused(response, int(loaded.predictor.vocabulary_version),
                            f"busy: {loaded.requests.depth} requests are already waiting "
                            "(vocabulary_queue_depth); nothing changed, try again later")
        return await done

    def _set_vocabulary(self, request: SetVocabulary.Request,
                        response: SetVocabulary.Response) -> SetVocabulary.Response:
        loaded = self._loaded
        if loaded is None:
            return _refused(response, 0, "node is not configured")
        predictor = loaded.predictor
        response.version = int(predictor.vocabulary_version)
        try:
            vocabulary = parse_request(list(request.classes), list(request.stuff), loaded.limits)
        except ValueError as error:
            return _refused(response, response.version, f"rejected, nothing changed: {error}")
        try:  # the text encoder runs here, in the queue's thread, never in the inference thread
            prepared = predictor.prepare_vocabulary(vocabulary)
        except Exception as error:  # noqa: BLE001 - report any failure to the caller
            return _refused(response, response.version,
                            f"failed, nothing changed: could not encode the classes: {error}")
        version = int(predictor.activate(prepared))
        loaded.vocabulary_outputs.publish(vocabulary, version)
        self._store_vocabulary_parameters(vocabulary)
        self._save_vocabulary(vocabulary, version)
        things = sum(1 for entry in vocabulary.entries if entry.isthing)
        response.success = True
        response.version = version
        response.class_ids = list(range(len(vocabulary.entries)))
        response.labels = [entry.names[0] for entry in vocabulary.entries]
        response.message = (f"vocabulary version {version}: {len(vocabulary.entries)} classes "
                            f"({things} things, {len(vocabulary.entries) - things} stuff)")
        self.get_logger().info(response.message)
        return response

    def _save_vocabulary(self, vocabulary: Any, version: int) -> None:
        if self.config is not None and self.config.vocabulary_state_file:
            path = Path(self.config.vocabulary_state_file).expanduser()
            try:
                save_state(path, vocabulary, version)
            except OSError as error:
                self.get_logger().error(f"could not save the vocabulary to {path}: {error}")

    # ------------------------------------------------------------------ diagnostics

    def _publish_diagnostics(self) -> None:
        state = self.lifecycle_state
        loaded, config = self._loaded, self.config
        progress = self._progress.snapshot()
        snap = self._stats.snapshot()
        previous = self._last_snapshot
        self._last_snapshot = snap
        values: dict[str, Any] = {"lifecycle_state": state}
        if progress.active:
            level, message = DiagnosticStatus.OK, f"loading: {progress.describe()}"
            values["loading_step"] = f"{progress.step}/{progress.steps}"
            values["loading_elapsed_s"] = f"{progress.elapsed_s:.1f}"
        elif loaded is None:
            level = DiagnosticStatus.ERROR if self._last_failure else DiagnosticStatus.WARN
            message = (f"unconfigured: configure failed: {self._last_failure}" if self._last_failure
                       else f"{state}: waiting for configure")
        else:
            level, message = self._running_status(snap, previous, loaded, state)
        if loaded is not None and config is not None:
            cache = loaded.predictor.text_cache.stats
            values.update({
                "model_config": config.model_config,
                "weights": loaded.weights or "none (untrained)",
                "device": str(loaded.predictor.device),
                "cpu_threads": inference_threads(),
                "input_topic": self._subscription.topic_name if self._subscription is not None else "(inactive)",
                "vocabulary_version": loaded.predictor.vocabulary_version,
                "classes": len(loaded.predictor.vocabulary.entries),
                "vocabulary_requests_waiting": loaded.requests.waiting,
                "text_cache_names": f"{cache.cached_names}/{loaded.predictor.text_cache.max_cached_names}",
                "text_cache_evicted": cache.evicted_names,
                **{name: _shown(getattr(config, name)) for name in _RUNTIME_SHOWN},
                **loaded.spatial.diagnostics(),
            })
        values.update({
            "frames_in": snap.frames_in,
            "frames_processed": snap.frames_processed,
            "frames_dropped": snap.frames_dropped,
            "frames_invalid": snap.frames_invalid,
            "frames_failed": snap.frames_failed,
            "processed_rate_hz": f"{snap.processed_per_s:.2f}",
            **{f"latency_{k}_ms": f"{v:.1f}" for k, v in snap.latency_ms.items()},
            **{f"inference_{k}_ms": f"{v:.1f}" for k, v in snap.inference_ms.items()},
            "last_error": snap.last_error,
        })
        hardware = str(loaded.predictor.device) if loaded is not None else ""
        status = DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: segmentation",
                                  message=message, hardware_id=hardware,
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)

    def _running_status(self, snap: StatsSnapshot, previous: StatsSnapshot | None, loaded: Loaded,
                        state: str) -> tuple[bytes, str]:
        new_failed = snap.frames_failed - (previous.frames_failed if previous else 0)
        new_invalid = snap.frames_invalid - (previous.frames_invalid if previous else 0)
        level, message = DiagnosticStatus.OK, "running" if state == "active" else f"{state} (not processing)"
        if not loaded.weights:
            level, message = DiagnosticStatus.WARN, "untrained model (random weights): outputs are meaningless"
        if new_invalid:
            level, message = DiagnosticStatus.WARN, f"{new_invalid} invalid frames skipped: {snap.last_error}"
        if new_failed:
            level, message = DiagnosticStatus.ERROR, f"{new_failed} frames failed: {snap.last_error}"
        if snap.frames_in == 0 and state == "active":
            message += " (no frames received yet)"
        return level, message

    # ------------------------------------------------------------------ start and stop

    def start(self) -> None:
        """configure, then activate (the ``autostart`` path); a failure is logged, the node stays up."""
        with self._transitions:
            if self._stopping or self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                return
        with self._transitions:
            if not self._stopping:
                self.trigger_activate()

    def shutdown(self, timeout: float = TRANSITION_WAIT_S) -> bool:
        """Bring the node to ``finalized`` from whatever state it is in; True when that went cleanly.

        A transition in progress (a model load) is waited for, up to ``timeout`` seconds.
        """
        self._stopping = True
        loading = self._loading
        if loading is not None:  # configure is encoding the initial vocabulary: stop it at the next pass
            loading.text_cache.abort()
        deadline = time.monotonic() + timeout
        if not self._transitions.acquire(timeout=timeout):
            self.get_logger().error(f"start-up transition {self.lifecycle_state!r} still running after {timeout:g} s")
            return False
        try:
            return self._shutdown_when_idle(deadline, timeout)
        finally:
            self._transitions.release()

    def _shutdown_when_idle(self, deadline: float, timeout: float) -> bool:
        while self._state_machine.current_state[0] not in _PRIMARY_STATES:
            if time.monotonic() > deadline:
                self.get_logger().error(f"transition {self.lifecycle_state!r} still running after {timeout:g} s")
                return False
            time.sleep(0.05)
        if self._state_machine.current_state[0] == State.PRIMARY_STATE_FINALIZED:
            return True
        try:
            return self.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
        except Exception as error:  # noqa: BLE001 - rclpy raises RCLError when no shutdown transition exists
            self.get_logger().error(f"shutdown failed in state {self.lifecycle_state!r}: {error}")
            return False


_RUNTIME_SHOWN = ("object_mask_threshold", "overlap_threshold", "ensemble_alpha", "ensemble_beta",
                  "input_short_side", "labels_source", "overlay_alpha", "overlay_labels", "publish_labels",
                  "publish_segment_ids", "publish_segments", "publish_detections", "publish_overlay")


def _model_summary(loaded: Loaded, config: NodeConfig) -> str:
    return (f"model {config.model_config} ({loaded.weights or 'untrained'}) on {loaded.predictor.device}, "
            f"{len(loaded.predictor.vocabulary.entries)} classes")


def _shown(value: Any) -> str:
    return "model default" if value is None else str(value)


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _refused(response: SetVocabulary.Response, version: int, message: str) -> SetVocabulary.Response:
    response.success = False
    response.version = version
    response.message = message
    return response


def _free_memory(device: Any) -> None:
    """Return the memory of a released model: collect it, empty the CUDA cache, trim the C heap."""
    gc.collect()
    if getattr(device, "type", "") == "cuda":
        import torch

        torch.cuda.empty_cache()
    try:  # glibc keeps freed heap pages; hand them back so the process's memory really drops
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _StopRequest:
    """SIGINT and SIGTERM only set a flag; the main thread then runs the lifecycle shutdown."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal = 0

    def install(self) -> None:
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._handle)

    def _handle(self, number: int, frame: Any) -> None:
        self.signal = number
        self.event.set()


def _init_rclpy(args: Sequence[str] | None) -> None:
    try:
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except ImportError:  # older rclpy without the option: our handlers replace its ones below
        rclpy.init(args=args)


def main(args: Sequence[str] | None = None) -> int:
    """Run the node until SIGINT/SIGTERM; exit status 0 after a clean lifecycle shutdown, else 1
    (2: unusable command line)."""
    stop = _StopRequest()
    stop.install()
    try:
        _init_rclpy(list(sys.argv) if args is None else list(args))
    except Exception as error:  # noqa: BLE001 - rclpy reports bad --ros-args as a generic RCLError
        print(f"[{NODE_NAME}] invalid command-line arguments ({error}); see `--ros-args --help`",
              file=sys.stderr, flush=True)
        return 2
    stop.install()  # after rclpy.init, in case it installed handlers of its own
    node = SegmentNode()
    executor = MultiThreadedExecutor(num_threads=6)
    executor.add_node(node)
    spin_thread = threading.Thread(target=_spin, args=(executor,), name="executor", daemon=True)
    spin_thread.start()
    if node.autostart:
        threading.Thread(target=node.start, name="autostart", daemon=True).start()
    # Ends on SIGINT/SIGTERM, or once a lifecycle manager has shut the node down (finalized).
    while not stop.event.wait(0.5) and spin_thread.is_alive() and node.lifecycle_state != "finalized":
        pass
    clean = node.shutdown()
    _shutdown_executor(executor)
    node.destroy_node()
    rclpy.try_shutdown()
    spin_thread.join(STOP_TIMEOUT_S)
    return 0 if clean else 1


def _shutdown_executor(executor: MultiThreadedExecutor) -> bool:
    """Stop the executor, waiting at most STOP_TIMEOUT_S for running callbacks; True if they all ended."""
    try:  # newer rclpy would otherwise wait for its pool threads without a time limit
        return executor.shutdown(timeout_sec=STOP_TIMEOUT_S, wait_for_threads=False)
    except TypeError:  # rclpy of Humble: no pool shutdown, no such argument
        return executor.shutdown(timeout_sec=STOP_TIMEOUT_S)


def _spin(executor: MultiThreadedExecutor) -> None:
    try:
        executor.spin()
    except ExternalShutdownException:
        pass


if __name__ == "__main__":
    sys.exit(main())
