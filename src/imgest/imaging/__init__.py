"""Imaging: from uploaded bytes to a model-ready rendition.

Import from the modules: `sniff` (probe, ImageInfo), `limits` (ImageLimits, check), `decode`
(decode), `steps` (STEPS, resize), `pipeline` (Pipeline, Rendition, builtin_pipelines). Nothing
is re-exported here: the functions `sniff` and `decode` would shadow their own modules.
"""
