"""Shape and view ops, dtype casts, and joining/splitting: reshape, squeeze, permute, expand, cast,
cat/stack/split/chunk/unbind/repeat.

Engine nodes have one output, so the multi-output torch functions (split, chunk, unbind) are one
node per part: attrs["index"] picks the part.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..dtypes import parse_dtype, result_type
from ..errors import AttributeValueError, ShapeError
from ..graph import TensorSpec
from ..registry import Attrs, attr, norm_dim, register, spec_of


def int_tuple(attrs: Attrs, name: str) -> tuple[int, ...]:
    """A required attribute holding a tuple of ints (a bare int is taken as a 1-tuple)."""
    value = attrs.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if not isinstance(value, tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise AttributeValueError(f"attribute {name!r} must be a tuple of ints, got {value!r}")
    return value


def _same_shape_backward(g, xs, out, attrs):
    return (g.reshape(xs[0].shape),)


# ---------------------------------------------------------------------------------------------
# reshape, flatten, squeeze, unsqueeze


def resolve_shape(shape: Sequence[int], numel: int) -> tuple[int, ...]:
    """Fill in a single -1 the way torch.reshape does, with its messages."""
    shape = tuple(shape)
    if shape.count(-1) > 1:
        raise ShapeError("only one dimension can be inferred")
    if any(s < -1 for s in shape):
        raise ShapeError(f"invalid shape dimension {min(shape)}")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if known == 0:
            raise ShapeError(f"cannot reshape tensor of {numel} elements into shape "
                             f"{list(shape)} because the unspecified dimension size -1 can be "
                             "any value and is ambiguous")
        if numel % known == 0:
            shape = tuple(numel // known if s == -1 else s for s in shape)
            known = numel
    if known != numel:
        raise ShapeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def reshape_infer(specs, attrs):
    return TensorSpec(resolve_shape(int_tuple(attrs, "shape"), specs[0].numel), specs[0].dtype)


register("reshape", infer=reshape_infer, saves=(), backward=_same_shape_backward,
         forward=lambda xs, attrs: xs[0].reshape(reshape_infer([spec_of(xs[0])], attrs).shape))


def flatten_infer(specs, attrs):
    shape = specs[0].shape
    if not shape:
        return TensorSpec((1,), specs[0].dtype)
    start = norm_dim(attr(attrs, "start_dim", int, 0), len(shape))
    end = norm_dim(attr(attrs, "end_dim", int, -1), len(shape))
    if start > end:
        raise AttributeValueError("flatten() has invalid args: start_dim cannot come after end_dim")
    merged = (math.prod(shape[start:end + 1]),)
    return TensorSpec(shape[:start] + merged + shape[end + 1:], specs[0].dtype)


register("flatten", infer=flatten_infer, saves=(), backward=_same_shape_backward,
         forward=lambda xs, attrs: xs[0].reshape(flatten_infer([spec_of(xs[0])], attrs).shape))


def squeeze_infer(specs, attrs):
    shape = specs[0].shape
    dim = attrs.get("dim")
    if dim is None:
        dims = range(len(shape))
    else:
        dims = [norm_dim(d, len(shape)) for d in (dim if isinstance(dim, tuple) else (dim,))]
    drop = {d for d in dims if d < len(shape) and shape[d] == 1}
    return TensorSpec(tuple(s for i, s in enumerate(shape) if i not in drop), specs[0].dtype)


register("squeeze", infer=squeeze_infer, saves=(), backward=_same_shape_backward,
         forward=lambda xs, attrs: xs[0].reshape(squeeze_infer([spec_of(xs[0])], attrs).shape))


def unsqueeze_infer(specs, attrs):
    shape = specs[0].shape
    dim = norm_dim(attr(attrs, "dim", int), len(shape) + 1)
    return TensorSpec(shape[:dim] + (1,) + shape[dim:], specs[0].dtype)


register("unsqueeze", infer=unsqueeze_infer, saves=(), backward=_same_shape_backward,
         forward=lambda xs, attrs: xs[0].reshape(unsqueeze_infer([spec_of(xs[0])], attrs).shape))


# ---------------------------------------------------------------------------------------------
# permute, transpose, movedim (backward applies the inverse permutation)


def permutation(attrs: Attrs, ndim: int, op: str) -> tuple[int, ...]:
    if op == "permute":
        dims = int_tuple(attrs, "dims")
        if len(dims) != ndim:
            raise ShapeError(f"permute(sparse_coo): number of dimensions in the tensor input does "
                             f"not match the length of the desired ordering of dimensions i.e. "
                             f"input.dim() = {ndim} is not equal to len(dims) = {len(dims)}")
        perm = tuple(norm_dim(d, ndim) for d in dims)
        if len(set(perm)) != ndim:
            raise AttributeValueError("permute(): duplicate dims are not allowed.")
        return perm
    if op == "transpose":
        perm = list(range(ndim))
        a = norm_dim(attr(attrs, "dim0", int), ndim)
        b = norm_dim(attr(attrs, "dim1", int), ndim)
        if ndim:
            perm[a], perm[b] = perm[b], perm[a]
        return tuple(perm)
    source = [norm_dim(d, ndim) for d in int_tuple(attrs, "source")]
    destination = [norm_dim(d, ndim) for d in int_tuple(attrs, "destination")]
    if len(source) != len(destination) or len(set(source)) != len(source) \
            or len(set(destination)) != len(destination):
        raise AttributeValueError("movedim: Invalid source or destination dims")
    return _moved(ndim, source, destination)


def _moved(ndim: int, source: list[int], destination: list[int]) -> tuple[int, ...]:
    rest = [d for d in range(ndim) if d not in source]
    perm = [-1] * ndim
    for s, d in zip(source, destination, strict=True):
        perm[d] = s
    it = iter(rest)
    return tuple(p if p != -1 else next(it) for p in perm)


def _permuter(op: str):
    def infer(specs, attrs):
        spec = specs[0]
        perm = permutation(attrs, spec.ndim, op)
        return TensorSpec(tuple(spec.shape[p] for p in perm), spec.dtype)

    def forward(xs, attrs):
        return np.transpose(xs[0], permutation(attrs, xs[0].ndim, op))

    def backward(g, xs, out, attrs):
        return (np.transpose(g, np.argsort(permutation(attrs, g.ndim, op))),)
    return infer, forward, backward


for _op in ("permute", "transpose", "movedim"):
    _infer, _forward, _backward = _permuter(_op)
    register(_op, infer=_infer, forward=_forward, backward=_backward, saves=())


# ---------------------------------------------------------------------------------------------
# expand (backward: the executor's sum_to), flip


def expand_infer(specs, attrs):
    spec = specs[0]
    sizes = int_tuple(attrs, "shape")
    lead = len(sizes) - spec.ndim
    if lead < 0:
        raise ShapeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater "
                         f"or equal to the number of dimensions in the tensor ({spec.ndim})")
    out = []
    for i, size in enumerate(sizes):
        have = spec.shape[i - lead] if i >= lead else None
        if size == -1:
            if have is None:
                raise ShapeError(f"The expanded size of the tensor (-1) isn't allowed in a "
                                 f"leading, non-existing dimension {i}")
            size = have
        elif size < 0 or (have is not None and have != 1 and have != size):
            raise ShapeError(f"The expanded size of the tensor ({size}) must match the existing "
                             f"size ({have}) at non-singleton dimension {i}.  Target sizes: "
                             f"{list(sizes)}.  Tensor sizes: {list(spec.shape)}")
        out.append(size)
    return TensorSpec(tuple(out), spec.dtype)


register("expand", infer=expand_infer, saves=(), backward=lambda g, xs, out, attrs: (g,),
         forward=lambda xs, attrs: np.broadcast_to(xs[0], expand_infer([spec_of(xs[0])], attrs).shape))


def _flip_dims(attrs: Attrs, ndim: int) -> tuple[int, ...]:
    return tuple(norm_dim(d, ndim) for d in int_tuple(attrs, "dims"))


def flip_infer(specs, attrs):
    _flip_dims(attrs, specs[0].ndim)
    return specs[0]


register("flip", saves=(), infer=flip_infer,
         forward=lambda xs, attrs: np.flip(xs[0], _flip_dims(attrs, xs[0].ndim)),
         backward=lambda g, xs, out, attrs: (np.flip(g, _flip_dims(attrs, g.ndim)),))


# ---------------------------------------------------------------------------------------------
# casts and copies (the executor casts each gradient back to its input's dtype)


def cast_infer(specs, attrs):
    return TensorSpec(specs[0].shape, parse_dtype(attrs.get("dtype")))


register("cast", infer=cast_infer, saves=(), backward=lambda g, xs, out, attrs: (g,),
         forward=lambda xs, attrs: xs[0].astype(parse_dtype(attrs["dtype"])))
register("clone", infer=lambda specs, attrs: specs[0], saves=(),
         forward=lambda xs, attrs: xs[0].copy(), backward=lambda g, xs, out, attrs: (g,))
register("contiguous", infer=lambda specs, attrs: specs[0], saves=(),
         forward=lambda xs, attrs: np.ascontiguousarray(xs[0]),
         backward=lambda g, xs, out, attrs: (g,))


# ---------------------------------------------------------------------------------------------
# cat, stack


def _is_legacy_empty(spec: TensorSpec) -> bool:
    """torch.cat skips 1-D empty tensors whatever the other shapes (legacy behaviour)."""
    return spec.shape == (0,)


def cat_infer(specs, attrs):
    dtype = result_type([TensorSpec((1,), s.dtype) for s in specs])
    real = [(i, s) for i, s in enumerate(specs) if not _is_legacy_empty(s)]
    if not real:
        return TensorSpec((0,), dtype)
    first_i, first = real[0]
    if first.ndim == 0:
        raise ShapeError(f"zero-dimensional tensor (at position {first_i}) cannot be concatenated")
    dim = norm_dim(attr(attrs, "dim", int, 0), first.ndim)
    total = 0
    for i, s in real:
        if s.ndim != first.ndim:
            raise ShapeError(f"Tensors must have same number of dimensions: got {first.ndim} "
                             f"and {s.ndim}")
        for d in range(first.ndim):
            if d != dim and s.shape[d] != first.shape[d]:
                raise ShapeError(f"Sizes of tensors must match except in dimension {dim}. "
                                 f"Expected size {first.shape[d]} but got size {s.shape[d]} "
                                 f"for tensor number {i} in the list.")
        total += s.shape[dim]
    return TensorSpec(first.shape[:dim] + (total,) + first.shape[dim + 1:], dtype)


def _cat(xs, attrs):
    dtype = cat_infer([TensorSpec(x.shape, x.dtype) for x in xs], attrs).dtype
    real = [x.astype(dtype, copy=False) for x in xs if x.shape != (0,)]
    if not real:
        return np.zeros((0,), dtype)
    return np.concatenate(real, axis=norm_dim(attr(attrs, "dim", int, 0), real[0].ndim))


def _cat_backward(g, xs, out, attrs):
    real = [x for x in xs if x.shape != (0,)]
    if not real:
        return tuple(np.zeros((0,), g.dtype) for _ in xs)
    dim = norm_dim(attr(attrs, "dim", int, 0), real[0].ndim)
    grads, start = [], 0
    for x in xs:
        if x.shape == (0,) and g.ndim != 1:
            grads.append(np.zeros((0,), g.dtype))
            continue
        stop = start + x.shape[dim]
        grads.append(g[(slice(None),) * dim + (slice(start, stop),)])
        start = stop
    return tuple(grads)


register("cat", arity=(1, None), infer=cat_infer, forward=_cat, backward=_cat_backward, saves=())


def stack_infer(specs, attrs):
    first = specs[0]
    for i, s in enumerate(specs):
        if s.shape != first.shape:
            raise ShapeError(f"stack expects each tensor to be equal size, but got "
                             f"{list(first.shape)} at entry 0 and {list(s.shape)} at entry {i}")
    dim = norm_dim(attr(attrs, "dim", int, 0), first.ndim + 1)
    dtype = result_type([TensorSpec((1,), s.dtype) for s in specs])
    return TensorSpec(first.shape[:dim] + (len(specs),) + first.shape[dim:], dtype)


def _stack(xs, attrs):
    spec = stack_infer([TensorSpec(x.shape, x.dtype) for x in xs], attrs)
    dim = norm_dim(attr(attrs, "dim", int, 0), xs[0].ndim + 1)
    return np.stack([x.astype(spec.dtype, copy=False) for x in xs], axis=dim)


def _stack_backward(g, xs, out, attrs):
    dim = norm_dim(attr(attrs, "dim", int, 0), g.ndim)
    return tuple(np.take(g, i, axis=dim) for i in range(len(xs)))


register("stack", arity=(1, None), infer=stack_infer, forward=_stack, backward=_stack_backward,
         saves=())


# ---------------------------------------------------------------------------------------------
# split, chunk, unbind: one part per node (attrs["index"])


def part_bounds(shape: tuple[int, ...], attrs: Attrs, op: str) -> tuple[int, int, int]:
    """(dim, start, stop) of the part attrs["index"] selects."""
    dim = norm_dim(attr(attrs, "dim", int, 0), len(shape))
    if not shape:
        raise ShapeError(f"{op}() cannot be applied to a 0-dim tensor.")
    size = shape[dim]
    if op == "split":
        sections = attrs.get("split_size")
        if isinstance(sections, tuple):
            sizes = list(int_tuple(attrs, "split_size"))
            if sum(sizes) != size or any(s < 0 for s in sizes):
                raise ShapeError(f"split_with_sizes expects split_sizes to sum exactly to {size} "
                                 f"(input tensor's size at dimension {dim}), but got "
                                 f"split_sizes={sizes}")
        else:
            step = attr(attrs, "split_size", int)
            if step <= 0 and not (step == 0 and size == 0):
                raise ShapeError(f"split_size can only be 0 if dimension size is 0, but got "
                                 f"dimension size of {size}")
            sizes = [min(step, size - s) for s in range(0, size, step)] if step else [0]
    else:
        chunks = attr(attrs, "chunks", int)
        if chunks <= 0:
            raise ShapeError("chunk expects `chunks` to be greater than 0, got: " + str(chunks))
        step = -(-size // chunks)
        sizes = [min(step, size - s) for s in range(0, size, step)] if step else [0] * chunks
    index = attr(attrs, "index", int)
    if not 0 <= index < len(sizes):
        raise AttributeValueError(f"{op} makes {len(sizes)} parts; index {index} is out of range")
    start = sum(sizes[:index])
    return dim, start, start + sizes[index]


def _parter(op: str):
    def infer(specs, attrs):
        spec = specs[0]
        dim, start, stop = part_bounds(spec.shape, attrs, op)
        return TensorSpec(spec.shape[:dim] + (stop - start,) + spec.shape[dim + 1:], spec.dtype)

    def forward(xs, attrs):
        dim, start, stop = part_bounds(xs[0].shape, attrs, op)
        return xs[0][(slice(None),) * dim + (slice(start, stop),)]

    def backward(g, xs, out, attrs):
        dim, start, stop = part_bounds(xs[0].shape, attrs, op)
        grad = np.zeros(xs[0].shape, g.dtype)
        grad[(slice(None),) * dim + (slice(start, stop),)] = g
        return (grad,)
    return infer, forward, backward


for _op in ("split", "chunk"):
    _infer, _forward, _backward = _parter(_op)
    register(_op, infer=_infer, forward=_forward, backward=_backward, saves=())


def _unbind_at(shape: tuple[int, ...], attrs: Attrs) -> tuple[int, int]:
    if not shape:
        raise ShapeError("Dimension specified as 0 but tensor has no dimensions")
    dim = norm_dim(attr(attrs, "dim", int, 0), len(shape))
    index = attr(attrs, "index", int)
    if not 0 <= index < shape[dim]:
        raise AttributeValueError(f"unbind makes {shape[dim]} parts; index {index} is out of range")
    return dim, index


def _unbind_backward(g, xs, out, attrs):
    dim, index = _unbind_at(xs[0].shape, attrs)
    grad = np.zeros(xs[0].shape, g.dtype)
    grad[(slice(None),) * dim + (index,)] = g
    return (grad,)


def unbind_infer(specs, attrs):
    shape = specs[0].shape
    dim, _ = _unbind_at(shape, attrs)
    return TensorSpec(shape[:dim] + shape[dim + 1:], specs[0].dtype)


register("unbind", infer=unbind_infer, backward=_unbind_backward, saves=(),
         forward=lambda xs, attrs: np.take(xs[0], _unbind_at(xs[0].shape, attrs)[1],
                                           axis=_unbind_at(xs[0].shape, attrs)[0]))


# ---------------------------------------------------------------------------------------------
# repeat (backward: view the gradient as (r0, s0, r1, s1, ...) and sum the r axes)


def repeat_infer(specs, attrs):
    spec = specs[0]
    reps = int_tuple(attrs, "repeats")
    if len(reps) < spec.ndim:
        raise ShapeError("Number of dimensions of repeat dims can not be smaller than number of "
                         "dimensions of tensor")
    if any(r < 0 for r in reps):
        raise ShapeError(f"Trying to create tensor with negative dimension: {list(reps)}")
    shape = (1,) * (len(reps) - spec.ndim) + spec.shape
    return TensorSpec(tuple(r * s for r, s in zip(reps, shape, strict=True)), spec.dtype)


def _repeat(xs, attrs):
    x, reps = xs[0], int_tuple(attrs, "repeats")
    return np.tile(x.reshape((1,) * (len(reps) - x.ndim) + x.shape), reps)


def _repeat_backward(g, xs, out, attrs):
    reps = int_tuple(attrs, "repeats")
    shape = (1,) * (len(reps) - xs[0].ndim) + xs[0].shape
    split = [n for r, s in zip(reps, shape, strict=True) for n in (r, s)]
    summed = g.reshape(split).sum(axis=tuple(range(0, 2 * len(reps), 2)))
    return (summed.reshape(xs[0].shape),)


register("repeat", infer=repeat_infer, forward=_repeat, backward=_repeat_backward, saves=())


# ---------------------------------------------------------------------------------------------
# pad (constant): attrs pad=(left_last, right_last, left_prev, right_prev, ...), value=0.0.
# Negative amounts crop, as in torch.nn.functional.pad.


def _pad_regions(shape: tuple[int, ...], attrs: Attrs) -> tuple[tuple[int, ...], tuple, tuple]:
    """(output shape, source slices of x, destination slices in the output)."""
    pad = int_tuple(attrs, "pad")
    if len(pad) % 2 or len(pad) // 2 > len(shape):
        raise AttributeValueError(f"Padding length must be divisible by 2 and at most twice the "
                                  f"number of dims ({len(shape)}), got {len(pad)}")
    out, src, dst = list(shape), [slice(None)] * len(shape), [slice(None)] * len(shape)
    for k in range(len(pad) // 2):
        d = len(shape) - 1 - k
        left, right = pad[2 * k], pad[2 * k + 1]
        size = shape[d] + left + right
        if size < 0:
            raise ShapeError(f"The input size {shape[d]}, plus negative padding {left} and "
                             f"{right} resulted in a negative output size, which is invalid. "
                             f"Check dimension {d} of your input.")
        out[d] = size
        start, stop = max(0, -left), shape[d] - max(0, -right)
        src[d] = slice(start, max(start, stop))
        dst[d] = slice(max(0, left), max(0, left) + max(0, stop - start))
    return tuple(out), tuple(src), tuple(dst)


def pad_infer(specs, attrs):
    attr(attrs, "value", (bool, int, float), 0.0)
    return TensorSpec(_pad_regions(specs[0].shape, attrs)[0], specs[0].dtype)


def _pad(xs, attrs):
    x = xs[0]
    shape, src, dst = _pad_regions(x.shape, attrs)
    out = np.full(shape, attrs.get("value") or 0, x.dtype)
    out[dst] = x[src]
    return out


def _pad_backward(g, xs, out, attrs):
    _, src, dst = _pad_regions(xs[0].shape, attrs)
    grad = np.zeros(xs[0].shape, g.dtype)
    grad[src] = g[dst]
    return (grad,)


register("pad", infer=pad_infer, forward=_pad, backward=_pad_backward, saves=())
