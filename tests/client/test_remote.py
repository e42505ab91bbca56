"""Through a real server (fixture `server`): the seed tutorial end to end, the same answers as the
in-process executor, and transport errors as one SDK exception."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import gradserve
import gradserve as torch
from gradserve._demo import TUTORIAL
from gradserve._format import tensor_repr

# What PyTorch 2.13 prints for the tutorial, up to the random parts (checked separately).
EXPECTED_HEAD = """\
tensor([[1., 1.],
        [1., 1.]], requires_grad=True)
tensor([[3., 3.],
        [3., 3.]], grad_fn=<AddBackward0>)
<AddBackward0 object at 0x@>
tensor([[27., 27.],
        [27., 27.]], grad_fn=<MulBackward0>) tensor(27., grad_fn=<MeanBackward0>)
False
True
<SumBackward0 object at 0x@>
tensor([[4.5000, 4.5000],
        [4.5000, 4.5000]])
"""
EXPECTED_TAIL = "True\nTrue\nFalse\n"


def run_tutorial() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(TUTORIAL, "autograd_tutorial.py", "exec"), {"__name__": "tutorial"})
    return out.getvalue()


def test_shipped_example_runs_as_a_module_against_a_server(server):
    # What the docs and the deployment run: the example module of the installed package.
    env = {**os.environ, "GRADSERVE_ADDRESS": server.address}
    done = subprocess.run([sys.executable, "-m", "gradserve.examples.autograd_tutorial"], env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    check_tutorial_output(done.stdout)


def check_tutorial_output(text: str) -> None:
    lines = text.splitlines(keepends=True)
    head = re.sub(r"object at 0x[0-9a-f]+>", "object at 0x@>", "".join(lines[:12]))
    assert head == EXPECTED_HEAD
    y_line, grad_line = lines[12], lines[13]
    assert re.fullmatch(r"tensor\(\[.*\], grad_fn=<MulBackward0>\)\n", y_line)
    # x.grad is the gradients scaled by the power of 2 the loop reached (51.2/512/0.0512 in the
    # tutorial's run): PyTorch prints exactly this repr for it.
    scale = float(re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", grad_line)[1])
    assert scale >= 2 and scale == 2.0 ** round(np.log2(scale))
    norm = np.linalg.norm([float(v) for v in re.findall(r"-?\d+\.\d+", y_line)])
    assert 1000 <= norm < 2000 or scale == 2            # the loop stopped at the first norm >= 1000
    expected = np.array([0.1, 1.0, 0.0001], np.float32) * np.float32(scale)
    assert grad_line == tensor_repr(expected) + "\n"
    assert "".join(lines[14:]) == EXPECTED_TAIL


def test_seed_tutorial_through_a_real_server(remote):
    check_tutorial_output(run_tutorial())
    assert remote.last_summary is not None and remote.last_summary.worker


def test_seed_tutorial_in_process():
    check_tutorial_output(run_tutorial())


def _graphs():
    """A set of graphs exercising the op families; each returns (outputs, leaves to differentiate)."""
    rng = np.random.default_rng(7)
    a = torch.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    b = torch.tensor(rng.standard_normal((4, 2)).astype(np.float32), requires_grad=True)
    c = torch.tensor(rng.standard_normal(4), requires_grad=True)          # float64
    t = torch.tensor([0, 1, 1])
    import gradserve.nn.functional as F
    yield "matmul-softmax", (a @ b).softmax(-1).sum(), [a, b]
    yield "broadcast", (a * a[0] - 1 / (a.abs() + 1)).mean(), [a]
    yield "float64", (c.exp() * c.double()).sum() + c.norm(), [c]
    yield "cross-entropy", F.cross_entropy(a, t), [a]
    yield "reductions", a.max(1)[0].sum() + a.amax() + a.var() + a.logsumexp(0).sum(), [a]
    yield "indexing", a[1:, [0, 2]].sum() + a[a > 0].sum() + a.t()[0].sum(), [a]
    yield "shapes", torch.cat([a.reshape(12), a.flatten().flip(0)]).view(4, 6).permute(1, 0)[2].sum(), [a]


def _results(grads: bool) -> dict:
    torch.manual_seed(0)
    out = {}
    for name, y, leaves in _graphs():
        gs = torch.autograd.grad(y, leaves)
        out[name] = (y.item(), [g.numpy().copy() for g in gs])
    return out


def test_in_process_and_remote_give_identical_answers(server):
    gradserve.connect("inprocess")
    local = _results(True)
    gradserve.connect(server.address)
    try:
        far = _results(True)
    finally:
        gradserve.connect("inprocess")
    assert local.keys() == far.keys()
    for name in local:
        assert local[name][0] == far[name][0], name
        for g1, g2 in zip(local[name][1], far[name][1], strict=True):
            assert g1.dtype == g2.dtype and np.array_equal(g1, g2), name


def test_transport_errors_become_service_errors():
    import grpc

    gradserve.connect("127.0.0.1:1", timeout=5, retries=2)
    with pytest.raises(gradserve.ServiceError) as info:
        (torch.ones(2) * 2).tolist()
    assert isinstance(info.value, RuntimeError) and info.value.code == grpc.StatusCode.UNAVAILABLE
    assert info.value.details


def test_server_side_rejections_keep_code_and_details(remote):
    import grpc

    from gradserve.engine import Graph, Leaf, Node

    graph = Graph([Leaf(1, (2,), np.dtype("float32"))], [Node(2, "no_such_op", (1,), {})])
    with pytest.raises(gradserve.ServiceError) as info:
        remote.evaluate(graph, {1: np.ones(2, np.float32)}, [2])
    assert info.value.code == grpc.StatusCode.UNIMPLEMENTED and "no_such_op" in info.value.details
