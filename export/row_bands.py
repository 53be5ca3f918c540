"""Run the int8 step's three layers in row bands, so a microcontroller's arena holds one band.

A TFLite interpreter with a static arena (TensorFlow Lite Micro, an Ethos-U's SRAM plan) keeps
every activation of the whole grid: for the bnn, conv1's 28 x 28 x 74 and conv2's 28 x 28 x 80
int8 outputs are live together, 85% of a 142 KB arena. ``row_bands`` rewrites the integer-only
step (``export.integer_only``) so that the layers run on horizontal bands of ``rows`` grid rows,
one band after another::

    for each band [r0, r1):
        x_k  = STRIDED_SLICE(state, rows r0 - 1 .. r1 + 1, clipped to the grid)
        x_k  = PAD(x_k, one row of the zero point where the band touches the grid's edge,
                   one column on each side)                  (out-of-grid = zero point, as SAME)
        ds_k = CONV_2D 1x1(CONV_2D 1x1(CONV_2D 3x3 VALID(x_k)))  (the same kernels and biases)
    ds = CONCATENATION(ds_0 .. ds_K-1, rows)

Every band's tensors have the whole-grid tensors' scales and zero points and the kernels are
shared, so each output value is computed by the same integers as before: the step's semantics
(``firmware_sim.int8``) do not change, only which tensors are live at once. The slice of the
mutable channels moves after the bands (it is needed only by the ADD).
"""

from __future__ import annotations

import copy

import numpy as np

from nca_edge.errors import NCAEdgeError

ROWS = 7  # grid rows per band (4 bands of a 28x28 grid): the bnn's TFLM arena falls from 142 KB to 72 KB


def row_bands(flatbuffer: bytes, rows: int = ROWS) -> bytes:
    from nca_edge.larq_mirror import _tf

    _tf()
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils as fu

    from .integer_only import _opcode, _prune

    m = fu.read_model_from_bytearray(bytearray(flatbuffer))
    (sg,) = m.subgraphs
    B = fb.BuiltinOperator
    code = lambda op: max(m.operatorCodes[op.opcodeIndex].builtinCode, m.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)  # noqa: E731
    state_t = next(int(t) for t in sg.inputs if sg.tensors[int(t)].shape[-1] > 1)
    batch, height, width, channels = (int(v) for v in sg.tensors[state_t].shape)
    reads = lambda t: [op for op in sg.operators if int(t) in [int(i) for i in op.inputs]]  # noqa: E731
    convs = [op for op in reads(state_t) if code(op) == B.CONV_2D]
    if len(convs) != 1:
        raise NCAEdgeError("row bands: not the integer-only int8 step graph")
    chain = convs
    for _ in range(2):
        (nxt,) = [op for op in reads(chain[-1].outputs[0]) if code(op) == B.CONV_2D]
        chain.append(nxt)
    ds_t = int(chain[-1].outputs[0])
    if rows >= height:
        return flatbuffer
    slice_code, pad_code = _opcode(m, fb, B.STRIDED_SLICE), _opcode(m, fb, B.PAD)
    concat_code = _opcode(m, fb, B.CONCATENATION)
    m.operatorCodes[pad_code].version = max(m.operatorCodes[pad_code].version, 2)  # int8 PAD

    def const(name: str, values: np.ndarray) -> int:
        buf = fb.BufferT()
        buf.data = np.ascontiguousarray(values, np.int32).view(np.uint8).reshape(-1)
        m.buffers.append(buf)
        t = fb.TensorT()
        t.name, t.type, t.shape, t.buffer = name.encode(), fb.TensorType.INT32, np.array(values.shape, np.int32), len(m.buffers) - 1
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def like(src: int, name: str, shape) -> int:
        t = copy.deepcopy(sg.tensors[src])
        t.name, t.shape, t.buffer, t.shapeSignature = name.encode(), np.array(shape, np.int32), 0, None
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def op(opcode: int, inputs, outputs, opts_type, opts) -> "fb.OperatorT":
        o = fb.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = opcode, np.array(inputs, np.int32), np.array(outputs, np.int32)
        o.builtinOptionsType, o.builtinOptions = opts_type, opts
        return o

    strides = const("bands/strides", np.ones(4, np.int32))
    new_ops, parts = [], []
    for k, r0 in enumerate(range(0, height, rows)):
        r1 = min(height, r0 + rows)
        a, b = max(0, r0 - 1), min(height, r1 + 1)
        x = like(state_t, f"bands/{k}/rows", (batch, b - a, width, channels))
        sl = fb.StridedSliceOptionsT()
        new_ops.append(op(slice_code, [state_t, const(f"bands/{k}/begin", np.array([0, a, 0, 0])),
                                       const(f"bands/{k}/end", np.array([batch, b, width, channels])), strides],
                          [x], fb.BuiltinOptions.StridedSliceOptions, sl))
        top, bottom = int(r0 == 0), int(r1 == height)
        xp = like(state_t, f"bands/{k}/padded", (batch, b - a + top + bottom, width + 2, channels))
        pads = const(f"bands/{k}/paddings", np.array([[0, 0], [top, bottom], [1, 1], [0, 0]]))
        new_ops.append(op(pad_code, [x, pads], [xp], fb.BuiltinOptions.PadOptions, fb.PadOptionsT()))
        src = xp
        for i, layer in enumerate(chain):
            out_t = int(layer.outputs[0])
            n_out = int(sg.tensors[out_t].shape[-1])
            y = like(out_t, f"bands/{k}/conv{i + 1}", (batch, r1 - r0, width, n_out))
            opts = copy.deepcopy(layer.builtinOptions)
            if i == 0:
                opts.padding = fb.Padding.VALID
            new_ops.append(op(layer.opcodeIndex, [src, int(layer.inputs[1]), int(layer.inputs[2])], [y],
                              layer.builtinOptionsType, opts))
            src = y
        parts.append(src)
    cat = fb.ConcatenationOptionsT()
    cat.axis, cat.fusedActivationFunction = 1, 0
    new_ops.append(op(concat_code, parts, [ds_t], fb.BuiltinOptions.ConcatenationOptions, cat))

    # the mutable channels' slice runs after the bands: it is read only by the ADD
    mutable = [o for o in reads(state_t) if code(o) == B.STRIDED_SLICE and sg.tensors[int(o.outputs[0])].shape[-1] == channels - 1]
    at = next(i for i, o in enumerate(sg.operators) if o is chain[0])
    rest = [o for o in sg.operators[at:] if all(o is not c for c in chain) and all(o is not s for s in mutable)]
    before = [o for o in sg.operators[:at] if all(o is not s for s in mutable)]
    sg.operators = before + new_ops + mutable + rest
    _prune(m, sg)
    return bytes(fu.convert_object_to_bytearray(m))
