"""The production line: signatures (`signing`), certified bundles (`bundle`), their ONNX export and onnxruntime
engine (`onnx`), scoring folders with them (`score`), recalibration on the line's cherries (`recalibrate`) and the
watch (`watch`).

Written by hand (nbdev exports the modules, not this file); it imports nothing, so importing one module of the
part does not import the others."""
