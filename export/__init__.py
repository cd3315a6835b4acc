"""Checkpoint -> the files an app embeds: ONNX fp32 / fp16-weights / int8, ``.ort``, ``model.json``.

Every step is a function from path to path (``onnx.export_onnx``, ``quantize.quantize_int8``,
``quantize.fp16_weights``, ``mobile.to_ort``); ``parity`` holds the gates that refuse a file disagreeing
with its reference; ``pipeline.export_all`` chains them and ``report`` writes ``export_report.json``.
``python -m export CHECKPOINT --out DIR`` is the command line. Importing this package imports nothing
heavy: torch and onnxruntime load inside the functions that need them.
"""
