"""Scaling out (docs/scaling.md): the worker processes of one node
(`pysfu serve --workers N`) and many nodes through Redis."""
