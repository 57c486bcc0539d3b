"""Meta-device construction: no parameter storage, real buffers, other threads unaffected."""
from __future__ import annotations

import threading

import torch
from torch import nn

from fcclip_core.modeling.lazy_init import meta_parameter_names, parameters_on_meta


class _WithBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.register_buffer("table", torch.arange(5.0), persistent=False)


def test_parameters_go_to_meta_and_buffers_stay_real():
    with parameters_on_meta():
        module = _WithBuffer()
    assert module.linear.weight.device.type == "meta" and module.linear.weight.requires_grad
    assert torch.equal(module.table, torch.arange(5.0))
    assert sorted(meta_parameter_names(module)) == ["linear.bias", "linear.weight"]
    module.load_state_dict({"linear.weight": torch.ones(3, 4), "linear.bias": torch.zeros(3)}, assign=True)
    assert meta_parameter_names(module) == []
    assert torch.equal(module.linear(torch.ones(1, 4)), torch.full((1, 3), 4.0))


def test_outside_the_block_and_in_other_threads_parameters_are_real():
    built = {}
    inside = threading.Event()
    release = threading.Event()

    def other_thread():
        inside.wait()
        built["other"] = nn.Linear(2, 2)
        release.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with parameters_on_meta():
        inside.set()
        release.wait(timeout=10)
        built["mine"] = nn.Linear(2, 2)
    worker.join()
    assert built["mine"].weight.device.type == "meta"
    assert built["other"].weight.device.type == "cpu"
    assert nn.Linear(2, 2).weight.device.type == "cpu"
