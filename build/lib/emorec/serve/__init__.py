"""``emorec serve``: an HTTP API and a web page over a released, trained or ONNX model."""
