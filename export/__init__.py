"""Exporters: one CA step as a deployable graph (TFLite, int8, LCE, ONNX, packed bits, C).

Planned (see the export issue). Every exported artifact takes (state, pixel/alive, fire mask)
and returns the next state; the host runs the loop and feeds masks from ``firmware_sim.prng``.
"""
