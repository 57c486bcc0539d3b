"""The FC-CLIP segmentation node: converts, schedules, publishes; the model is fcclip_core's.

Threads: the executor runs the image callback (which only drops the message into the
latest-frame slot), the diagnostics timer and, in a callback group of its own, the
set_vocabulary service (text encoding takes a while and must not hold up frames). One worker
thread converts and segments the newest frame and publishes the outputs.

Run: ``ros2 run fcclip_ros segment_node`` or ``fcclip-segment-node`` (pip-only set-up), with
``--ros-args --params-file config/segment.yaml`` and remappings such as ``-r image:=/camera/image_raw``.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image

from fcclip_ros import conversions as conv
from fcclip_ros.model_setup import StartupError, inference_threads, load_predictor
from fcclip_ros.node_config import PARAMETERS, SPECS, ConfigError, NodeConfig, parse_config
from fcclip_ros.outputs import FrameOutputs, VocabularyOutputs, import_vision_msgs, qos_profile
from fcclip_ros.spatial_outputs import SpatialOutputs
from fcclip_ros.srv import SetVocabulary
from fcclip_ros.vocabulary_source import RequestLimits, as_request, initial_vocabulary, parse_request, save_state
from fcclip_ros.worker import FrameStats, InferenceWorker, StatsSnapshot

NODE_NAME = "segment_node"
LOG_THROTTLE_S = 5.0
STOP_TIMEOUT_S = 2.0  # how long shutdown waits for a frame in the model before leaving it behind


@dataclass
class PendingFrame:
    msg: Image | CompressedImage
    received: float  # time.monotonic() when the callback got it


class SegmentNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self._local = threading.local()  # marks parameter updates made by the node itself
        self.config = self._read_parameters()
        config = self.config
        self._limits = RequestLimits(config.max_classes, config.max_label_length)
        self._frame_limits = conv.FrameLimits(config.max_image_pixels, config.max_image_side,
                                              config.image_16bit_max)
        try:  # parsing is cheap: a bad vocabulary fails before the model is loaded
            vocabulary, source = initial_vocabulary(
                classes=config.vocabulary, stuff=config.vocabulary_stuff, vocabulary_file=config.vocabulary_file,
                state_file=config.vocabulary_state_file, limits=self._limits)
        except ValueError as error:
            raise ConfigError(f"invalid parameters:\n  - {error}") from error

        self.get_logger().info(f"loading model {config.model_config!r} on device {config.device!r} ...")
        loaded = load_predictor(
            config.model_config, config.weights, config.device, allow_untrained=config.allow_untrained,
            allow_download=config.allow_download, clip_weights=config.clip_weights,
            input_short_side=config.input_short_side, max_long_side=config.max_long_side,
            object_mask_threshold=config.object_mask_threshold, overlap_threshold=config.overlap_threshold,
            cpu_threads=config.cpu_threads)
        self._predictor = loaded.predictor
        self._weights = loaded.weights  # "" when untrained
        if loaded.untrained:
            self.get_logger().warning(
                "NO WEIGHTS: running an UNTRAINED model with random weights; its masks are meaningless")
        try:
            self._predictor.set_vocabulary(vocabulary)
        except Exception as error:  # noqa: BLE001 - any failure here means the node cannot start
            raise StartupError(f"could not encode the initial vocabulary ({source}): {error}") from error

        vision_msgs = import_vision_msgs()
        if vision_msgs is None and config.publish_detections:
            self.get_logger().info("vision_msgs is not installed: ~/detections and ~/label_info are off")
        self._outputs = FrameOutputs(self, config, vision_msgs)
        image_qos = qos_profile(config.image_qos)
        self._spatial = SpatialOutputs(self, config.spatial, image_qos, qos_profile(config.output_qos),
                                       vision_msgs)
        self._vocabulary_outputs = VocabularyOutputs(self, vision_msgs)
        self._stats = FrameStats(window=config.stats_window)
        self._worker: InferenceWorker[PendingFrame] = InferenceWorker(self._process, self._stats, self._on_error)
        self._last_snapshot: StatsSnapshot | None = None
        self._encoding = threading.Event()  # set while a set_vocabulary request runs the text encoder

        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._publish_vocabulary_change(self._predictor.vocabulary, self._predictor.vocabulary_version)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(config.diagnostics_period, self._publish_diagnostics)
        self.create_service(SetVocabulary, "~/set_vocabulary", self._on_set_vocabulary,
                            callback_group=MutuallyExclusiveCallbackGroup())
        frames = MutuallyExclusiveCallbackGroup()
        if config.image_transport == "compressed":
            self._subscription = self.create_subscription(
                CompressedImage, "image/compressed", self._on_frame, image_qos, callback_group=frames)
        else:
            self._subscription = self.create_subscription(Image, "image", self._on_frame, image_qos,
                                                          callback_group=frames)
        self._worker.start()
        self.get_logger().info(
            f"ready: model {config.model_config} ({self._weights or 'untrained'}) on {self._predictor.device}, "
            f"{len(vocabulary.entries)} classes from {source}, input {self._subscription.topic_name} "
            f"({config.image_transport}, {config.image_qos.reliability}, depth {config.image_qos.depth})")

    # ------------------------------------------------------------------ parameters

    def _read_parameters(self) -> NodeConfig:
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default,
                                   ParameterDescriptor(description=spec.description, dynamic_typing=True))
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        # Overrides that match no declared parameter are typos: report them instead of ignoring them.
        for name, parameter in getattr(self, "_parameter_overrides", {}).items():
            if name not in values:
                values[name] = parameter.value
        return parse_config(values)

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        if getattr(self._local, "internal", False):
            return SetParametersResult(successful=True)
        ours = [p.name for p in parameters if p.name in SPECS]
        if ours:
            return SetParametersResult(
                successful=False,
                reason=f"{', '.join(ours)} cannot change at run time; use ~/set_vocabulary for the classes, "
                       "restart the node for the rest")
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

    # ------------------------------------------------------------------ frames

    def _on_frame(self, msg: Image | CompressedImage) -> None:
        self._spatial.expect(msg.header)
        self._worker.submit(PendingFrame(msg, time.monotonic()))

    def _decode(self, msg: Image | CompressedImage) -> Any:
        if isinstance(msg, CompressedImage):
            return conv.compressed_to_rgb(msg, self._frame_limits)
        return conv.image_to_rgb(msg, self._frame_limits)

    def _process(self, frame: PendingFrame) -> None:
        try:
            rgb = self._decode(frame.msg)
        except conv.FrameError as error:
            self._stats.count_invalid(str(error))
            self.get_logger().warning(f"skipping frame: {error}", throttle_duration_sec=LOG_THROTTLE_S)
            return
        started = time.monotonic()
        result = self._predictor.predict(rgb, tasks=self._outputs.tasks)
        inference = time.monotonic() - started
        if self._worker.stopping:
            return
        spatial = self._spatial.process(result, frame.msg.header)
        self._outputs.publish(result, rgb, frame.msg.header, spatial.tracks, spatial.geometry)
        self._stats.count_processed(time.monotonic() - frame.received, inference)

    def _on_error(self, error: Exception) -> None:
        reason = f"{type(error).__name__}: {error}"
        self._stats.count_failed(reason)
        self.get_logger().error(f"frame failed: {reason}", throttle_duration_sec=LOG_THROTTLE_S)

    # ------------------------------------------------------------------ vocabulary

    def _on_set_vocabulary(self, request: SetVocabulary.Request,
                           response: SetVocabulary.Response) -> SetVocabulary.Response:
        self._encoding.set()
        try:
            return self._set_vocabulary(request, response)
        finally:
            self._encoding.clear()

    def _set_vocabulary(self, request: SetVocabulary.Request,
                        response: SetVocabulary.Response) -> SetVocabulary.Response:
        response.version = int(self._predictor.vocabulary_version)
        try:
            vocabulary = parse_request(list(request.classes), list(request.stuff), self._limits)
        except ValueError as error:
            response.success = False
            response.message = f"rejected, nothing changed: {error}"
            return response
        try:  # the text encoder runs here, in the service's thread, never in the inference thread
            prepared = self._predictor.prepare_vocabulary(vocabulary)
        except Exception as error:  # noqa: BLE001 - report any failure to the caller
            response.success = False
            response.message = f"failed, nothing changed: could not encode the classes: {error}"
            return response
        version = int(self._predictor.activate(prepared))
        self._publish_vocabulary_change(vocabulary, version)
        things = sum(1 for entry in vocabulary.entries if entry.isthing)
        response.success = True
        response.version = version
        response.class_ids = list(range(len(vocabulary.entries)))
        response.labels = [entry.names[0] for entry in vocabulary.entries]
        response.message = (f"vocabulary version {version}: {len(vocabulary.entries)} classes "
                            f"({things} things, {len(vocabulary.entries) - things} stuff)")
        self.get_logger().info(response.message)
        return response

    def _publish_vocabulary_change(self, vocabulary: Any, version: int) -> None:
        self._vocabulary_outputs.publish(vocabulary, version)
        self._store_vocabulary_parameters(vocabulary)
        if self.config.vocabulary_state_file:
            path = Path(self.config.vocabulary_state_file).expanduser()
            try:
                save_state(path, vocabulary, version)
            except OSError as error:
                self.get_logger().error(f"could not save the vocabulary to {path}: {error}")

    # ------------------------------------------------------------------ diagnostics

    def _publish_diagnostics(self) -> None:
        snap = self._stats.snapshot()
        previous = self._last_snapshot
        self._last_snapshot = snap
        new_failed = snap.frames_failed - (previous.frames_failed if previous else 0)
        new_invalid = snap.frames_invalid - (previous.frames_invalid if previous else 0)
        level, message = DiagnosticStatus.OK, "running"
        if not self._weights:
            level, message = DiagnosticStatus.WARN, "untrained model (random weights): outputs are meaningless"
        if new_invalid:
            level, message = DiagnosticStatus.WARN, f"{new_invalid} invalid frames skipped: {snap.last_error}"
        if new_failed:
            level, message = DiagnosticStatus.ERROR, f"{new_failed} frames failed: {snap.last_error}"
        if snap.frames_in == 0:
            message += " (no frames received yet)"
        values = {
            "model_config": self.config.model_config,
            "weights": self._weights or "none (untrained)",
            "device": str(self._predictor.device),
            "cpu_threads": inference_threads(),
            "input_topic": self._subscription.topic_name,
            "vocabulary_version": self._predictor.vocabulary_version,
            "classes": len(self._predictor.vocabulary.entries),
            "frames_in": snap.frames_in,
            "frames_processed": snap.frames_processed,
            "frames_dropped": snap.frames_dropped,
            "frames_invalid": snap.frames_invalid,
            "frames_failed": snap.frames_failed,
            "processed_rate_hz": f"{snap.processed_per_s:.2f}",
            **{f"latency_{k}_ms": f"{v:.1f}" for k, v in snap.latency_ms.items()},
            **{f"inference_{k}_ms": f"{v:.1f}" for k, v in snap.inference_ms.items()},
            "last_error": snap.last_error,
            **self._spatial.diagnostics(),
        }
        status = DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: segmentation",
                                  message=message, hardware_id=str(self._predictor.device),
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)

    # ------------------------------------------------------------------ shutdown

    def stop_worker(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop taking frames; True when the worker ended within ``timeout`` (else it is left running)."""
        return self._worker.stop(timeout)

    def wait_for_service_calls(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """True when no set_vocabulary request is running (waiting up to ``timeout`` for one to end)."""
        deadline = time.monotonic() + timeout
        while self._encoding.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._encoding.is_set()


class _ShutdownRequested(BaseException):
    """SIGINT/SIGTERM before the node was spinning (while the model loads, for example).

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way swallows it.
    """


class _SignalLatch:
    """SIGINT and SIGTERM end the node the same way: quietly, with exit status 0."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.spinning = False

    def install(self) -> None:
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._handle)

    def _handle(self, number: int, frame: Any) -> None:
        self.requested.set()
        if not self.spinning:
            raise _ShutdownRequested()


def _init_rclpy(args: Sequence[str] | None) -> None:
    try:
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except ImportError:  # older rclpy without the option: our handlers replace its ones below
        rclpy.init(args=args)


def main(args: Sequence[str] | None = None) -> int:
    latch = _SignalLatch()
    latch.install()
    node: SegmentNode | None = None
    executor: MultiThreadedExecutor | None = None
    spin_thread: threading.Thread | None = None
    finished = True  # False when a thread is still busy (a frame in the model, a service call)
    try:
        try:
            _init_rclpy(list(sys.argv) if args is None else list(args))
        except Exception as error:  # noqa: BLE001 - rclpy reports bad --ros-args as a generic RCLError
            print(f"[{NODE_NAME}] invalid command-line arguments ({error}); see `--ros-args --help`",
                  file=sys.stderr, flush=True)
            return 2
        latch.install()  # after rclpy.init, in case it installed handlers of its own
        try:
            node = SegmentNode()
        except ConfigError as error:
            print(f"[{NODE_NAME}] {error}", file=sys.stderr, flush=True)
            return 2
        except StartupError as error:
            print(f"[{NODE_NAME}] cannot start: {error}", file=sys.stderr, flush=True)
            return 1
        executor = MultiThreadedExecutor(num_threads=3)
        executor.add_node(node)
        spin_thread = threading.Thread(target=_spin, args=(executor,), name="executor", daemon=True)
        latch.spinning = True
        spin_thread.start()
        while not latch.requested.wait(0.5):  # the wait wakes for signal handlers
            if not spin_thread.is_alive():
                break
    except _ShutdownRequested:
        pass
    finally:
        latch.spinning = True  # from here on a second signal only sets the flag
        if node is not None:
            finished = node.stop_worker()
        if executor is not None:
            finished = _shutdown_executor(executor) and finished
        if node is not None:
            # rclpy does not count every running callback as outstanding work; ask the node.
            finished = node.wait_for_service_calls() and finished
        if not finished:
            # A frame is still inside the model or a vocabulary is being encoded: leave now
            # rather than wait for it (nothing to save; a saved vocabulary file is always complete).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        if spin_thread is not None:
            spin_thread.join(STOP_TIMEOUT_S)
    return 0


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
