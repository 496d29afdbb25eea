"""The examples folder as a package: ``examples.torch_cnn:DigitsCNN`` names a trainable in it, and a
cluster gets the folder (pbt ships a custom trainable's top-level package to the nodes)."""
