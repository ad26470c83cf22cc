"""Using a model: the model files (``model_files``: ``model.safetensors`` + ``model.json``), the
models shipped in the package (``released``), files -> probabilities (``predictor``, ``predict``,
``long_input``), the Python API behind ``emorec.load`` (``api``), emotion over time
(``timeline``, ``timeline_files``, ``streaming``, ``speech_detector``, ``live``), the ONNX graph
(``onnx_export``, ``onnx_runtime``) and a model's embedding as a feature (``embedding``).

This package's root imports nothing, so that reading a model file or running the ONNX graph does
not load torch."""
