"""Triton kernels of fastecg (importable as ``fastecg.triton_kernels``).

They run on a GPU, or on the CPU under ``TRITON_INTERPRET=1`` (set before import)
for tests. Launchers are plain functions called from inside fastecg's custom ops.
"""
