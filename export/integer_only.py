"""Make the converter's int8 step integer-only: every comparison becomes a saturating CONV_2D.

TensorFlow's converter writes each 0/1 step of the int8 step graph as a comparison chain with a
bool and a float32 tensor in it::

    GREATER(pixel, c)    -> CAST(float32) -> QUANTIZE -> alive   (every variant: the alive mask)
    GREATER_EQUAL(p, 0)  -> CAST(float32) -> QUANTIZE -> p01     (ban, bnn: each binary activation)

Integer-only targets (TFLite Micro's int8 kernels, Arm Ethos-U through vela) cannot run that.
``integer_only`` rewrites the flatbuffer so that every 0/1 step is a convolution whose
requantization saturates (the output tensor is the QUANTIZE's own: scale 1/255, zero point
-128, so the int8 values -128 and 127 are the reals 0 and 1)::

    y = clamp(MBQM(acc, M) - 128, -128, 127),   M = S_in * S_w / S_out = STEP_MULTIPLIER (255.75)

is -128 for every acc <= 0 and 127 for every acc >= 1 (M * 1 >= 255 under any rounding, and
M < 256 keeps the left shift at 8 and inside XNNPACK's requantization range), so it is the
integer step [acc >= 1], with nothing but a convolution:

* a binary activation: the conv that computed the pre-activation now writes the 0/1 tensor
  directly. Its int8 kernel and int32 bias are kept (so ``acc`` is the same integer); only the
  per-channel kernel scales change (a positive rescale, which no sign sees), and the bias gets
  +1 for ``>=`` (sign: [acc >= 0] = [acc + 1 >= 1]; heaviside's ``>`` needs none). The step
  is thus taken on the exact int32 accumulator, not on its rounded int8 value.
* the alive mask: a new 1x1 CONV_2D on the pixel with kernel 1 and bias ``Zpix - alive_min +
  1``: ``acc = q - alive_min + 1``, so it is on exactly where the converter's GREATER was
  (``alive_min``: ``firmware_sim.int8.compare_min`` of its constant).

The comparison, CAST and QUANTIZE ops, their bool and float32 tensors and the operator codes
no longer used are removed. ``firmware_sim.int8`` is the integer semantics of the result.
"""

from __future__ import annotations

import numpy as np

from firmware_sim import int8 as int8_sim
from nca_edge.errors import NCAEdgeError

STEP_MULTIPLIER = 255.75  # M of a saturating step conv: M * 1 >= 255.5 (-> +127), M < 256 (left shift 8)
ONE_SCALE = np.float32(1.0 / 255.0)  # the 0/1 tensors: scale 1/255, zero point -128


def integer_only(flatbuffer: bytes) -> bytes:
    """The int8 step flatbuffer with its comparison chains replaced (module docstring)."""
    from nca_edge.larq_mirror import _tf

    _tf()
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils as fu

    m = fu.read_model_from_bytearray(bytearray(flatbuffer))
    (sg,) = m.subgraphs
    code = lambda op: max(m.operatorCodes[op.opcodeIndex].builtinCode, m.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)  # noqa: E731
    B = fb.BuiltinOperator
    producer = {int(t): op for op in sg.operators for t in op.outputs}
    reader = lambda t: [op for op in sg.operators if int(t) in [int(i) for i in op.inputs]]  # noqa: E731
    dead_ops = []
    conv_code = _opcode(m, fb, B.CONV_2D)
    for cmp_op in [op for op in sg.operators if code(op) in (B.GREATER, B.GREATER_EQUAL)]:
        (cast,) = reader(cmp_op.outputs[0])
        (quant,) = reader(cast.outputs[0])
        if (code(cast), code(quant)) != (B.CAST, B.QUANTIZE):
            raise NCAEdgeError("unexpected comparison chain in the int8 step graph")
        out_t = int(quant.outputs[0])
        s_out, z_out = _qparams(sg.tensors[out_t])
        if np.float32(s_out) != ONE_SCALE or z_out != -128:
            raise NCAEdgeError(f"a 0/1 tensor quantized as ({s_out}, {z_out}), not (1/255, -128)")
        x_t, c_t = (int(i) for i in cmp_op.inputs)
        strict = code(cmp_op) == B.GREATER
        src = producer.get(x_t)
        if src is not None and code(src) == B.CONV_2D:  # a binary activation
            c_val = _const(m, sg, c_t)
            if c_val != 0.0:
                raise NCAEdgeError("a binary activation compares with a nonzero constant")
            _make_step_conv(m, sg, fb, src, out_t, plus_one=not strict)
            sg.tensors[out_t].name = _name(sg.tensors[int(src.inputs[1])]).split("/Conv2D")[0].encode() + b"/step"
        else:  # the alive mask of the pixel
            s_x, z_x = _qparams(sg.tensors[x_t])
            s_c, z_c = _qparams(sg.tensors[c_t])
            value = int(np.asarray(_buffer(m, sg, c_t), np.int8).reshape(-1)[0])
            alive_min = int8_sim.compare_min(s_x, z_x, value, s_c, z_c, strict=strict)
            _add_alive_conv(m, sg, fb, conv_code, x_t, out_t, s_x, z_x, alive_min)
            sg.tensors[out_t].name = b"alive"
        dead_ops += [cmp_op, cast, quant]
    if not dead_ops:
        raise NCAEdgeError("no comparison chain to rewrite: not the converter's int8 step graph")
    sg.operators = [op for op in sg.operators if all(op is not d for d in dead_ops)]
    _prune(m, sg)
    return bytes(fu.convert_object_to_bytearray(m))


def _qparams(t) -> tuple[float, int]:
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        raise NCAEdgeError(f"tensor {_name(t)!r} is not per-tensor quantized")
    return float(np.float32(q.scale[0])), int(q.zeroPoint[0])


def _name(t) -> str:
    return t.name.decode() if isinstance(t.name, bytes) else str(t.name)


def _buffer(m, sg, t: int) -> np.ndarray:
    data = m.buffers[sg.tensors[t].buffer].data
    if data is None:
        raise NCAEdgeError(f"tensor {_name(sg.tensors[t])!r} is not a constant")
    return np.asarray(data, np.uint8)


def _const(m, sg, t: int) -> float:
    """The real value of a scalar int8 constant."""
    s, z = _qparams(sg.tensors[t])
    return s * (int(_buffer(m, sg, t).view(np.int8).reshape(-1)[0]) - z)


def _opcode(m, fb, builtin: int) -> int:
    for i, c in enumerate(m.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin:
            return i
    c = fb.OperatorCodeT()
    c.builtinCode = builtin
    c.deprecatedBuiltinCode = min(builtin, 127)
    c.version = 1
    m.operatorCodes.append(c)
    return len(m.operatorCodes) - 1


def _step_scales(s_in: float, n: int) -> np.ndarray:
    """Kernel scales that make every channel's requantization multiplier STEP_MULTIPLIER."""
    return np.full(n, np.float32(STEP_MULTIPLIER * float(ONE_SCALE) / s_in), np.float32)


def _make_step_conv(m, sg, fb, conv, out_t: int, plus_one: bool) -> None:
    """Rewire ``conv`` to write the 0/1 tensor ``out_t`` with saturating requantization."""
    if conv.builtinOptions.fusedActivationFunction != 0:
        raise NCAEdgeError("a binary activation's conv has a fused activation")
    x_t, w_t, b_t = (int(i) for i in conv.inputs)
    s_in, _ = _qparams(sg.tensors[x_t])
    n = sg.tensors[w_t].shape[0]
    ws = _step_scales(s_in, n)
    sg.tensors[w_t].quantization.scale = ws
    sg.tensors[b_t].quantization.scale = (np.float64(s_in) * ws.astype(np.float64)).astype(np.float32)
    if plus_one:
        bias = _buffer(m, sg, b_t).view(np.int32).astype(np.int64) + 1
        if np.any(bias > np.iinfo(np.int32).max):
            raise NCAEdgeError("a bias does not fit int32")
        buf = fb.BufferT()  # a buffer of its own: the converter shares identical constant buffers
        buf.data = bias.astype(np.int32).view(np.uint8)
        m.buffers.append(buf)
        sg.tensors[b_t].buffer = len(m.buffers) - 1
    conv.outputs = np.array([out_t], np.int32)


def _add_alive_conv(m, sg, fb, conv_code: int, x_t: int, out_t: int, s_x: float, z_x: int, alive_min: int) -> None:
    """A 1x1 CONV_2D pixel -> alive: kernel 1, bias Zx - alive_min + 1 (acc = q - alive_min + 1)."""
    ws = _step_scales(s_x, 1)

    def tensor(name: str, dtype, values: np.ndarray, scale: np.ndarray) -> int:
        buf = fb.BufferT()
        buf.data = np.ascontiguousarray(values).view(np.uint8).reshape(-1)
        m.buffers.append(buf)
        t = fb.TensorT()
        t.name, t.type, t.shape, t.buffer = name.encode(), dtype, np.array(values.shape, np.int32), len(m.buffers) - 1
        q = fb.QuantizationParametersT()
        q.scale, q.zeroPoint, q.quantizedDimension = scale, np.zeros(len(scale), np.int64), 0
        t.quantization = q
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    w_t = tensor("alive/kernel", fb.TensorType.INT8, np.ones((1, 1, 1, 1), np.int8), ws)
    b_t = tensor("alive/bias", fb.TensorType.INT32, np.array([z_x - alive_min + 1], np.int32),
                 (np.float64(s_x) * ws.astype(np.float64)).astype(np.float32))
    opts = fb.Conv2DOptionsT()
    opts.padding, opts.strideW, opts.strideH, opts.dilationWFactor, opts.dilationHFactor = fb.Padding.VALID, 1, 1, 1, 1
    opts.fusedActivationFunction = 0
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = conv_code, np.array([x_t, w_t, b_t], np.int32), np.array([out_t], np.int32)
    op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.Conv2DOptions, opts
    # keep execution order: the alive conv runs where the comparison ran (after its input exists)
    at = next(i for i, o in enumerate(sg.operators) if x_t in [int(t) for t in o.outputs]) + 1
    sg.operators.insert(at, op)


def _prune(m, sg) -> None:
    """Drop tensors no op or graph input/output uses, and operator codes no op uses; reindex."""
    used = {int(t) for op in sg.operators for t in list(op.inputs) + list(op.outputs) if int(t) >= 0}
    used |= {int(t) for t in sg.inputs} | {int(t) for t in sg.outputs}
    keep = sorted(used)
    new = {old: i for i, old in enumerate(keep)}
    remap = lambda ts: np.array([new[int(t)] if int(t) >= 0 else -1 for t in ts], np.int32)  # noqa: E731
    for op in sg.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        op.intermediates = None
    sg.inputs, sg.outputs = remap(sg.inputs), remap(sg.outputs)
    for sig in m.signatureDefs or []:  # the converter's serving_default names tensors by index too
        for t in list(sig.inputs or []) + list(sig.outputs or []):
            t.tensorIndex = new[int(t.tensorIndex)]
    sg.tensors = [sg.tensors[i] for i in keep]
    codes = sorted({op.opcodeIndex for op in sg.operators})
    cnew = {old: i for i, old in enumerate(codes)}
    m.operatorCodes = [m.operatorCodes[i] for i in codes]
    for op in sg.operators:
        op.opcodeIndex = cnew[op.opcodeIndex]
    # buffers of dropped constants are emptied (index 0 is the empty sentinel; indices stay valid)
    live = {t.buffer for t in sg.tensors}
    for i, b in enumerate(m.buffers):
        if i and i not in live and i not in _metadata_buffers(m):
            b.data = None


def _metadata_buffers(m) -> set[int]:
    return {md.buffer for md in (m.metadata or [])}
