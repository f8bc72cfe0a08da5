"""Extraction: the engine (engine.py: source -> windows -> featurizer + runner -> writer), the
runners (runners.py: CPU threads, CUDA), batch planning (batching.py), the background writer
thread (background.py), shards (shards.py) and extraction under a launcher (launch.py).

Nothing is imported here, so a module that needs one part (a head padding sequences with
featx.extraction.batching) loads that part alone; `featx.extract` is the public entry."""
