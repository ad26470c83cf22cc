"""Using a model: the model files (``model_files``: ``model.safetensors`` + ``model.json``), the
models shipped in the package (``released``), files -> probabilities (``predictor``, ``predict``,
``long_input``), the Python API behind ``emorec.load`` (``api``), emotion over time
(``timeline``, ``timeline_files``, ``streaming``, ``live``) and the ONNX graph (``onnx_export``,
``onnx_runtime``).

This package's root imports nothing, so that reading a model file or running the ONNX graph does
not load torch."""
