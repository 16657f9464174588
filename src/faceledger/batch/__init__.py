"""Batch work on a Ray cluster: enrolment images, video archives and evaluation images, one
engine per worker.

- :mod:`~faceledger.batch.types`: what crosses processes (no Ray): engine spec, image
  jobs, embedded images, the ``Embedder`` protocol the service takes;
- :mod:`~faceledger.batch.cluster`: connecting the driver to ``--ray ADDRESS``;
- :mod:`~faceledger.batch.embedding`: enrolment chunks embedded by worker actors, and the
  chunk scheduling (``dispatch``) every pool of worker actors uses;
- :mod:`~faceledger.batch.evaluation`: the images an evaluation cache lacks, embedded by
  worker actors running the cache's per-image step (passed in: batch never imports eval);
- :mod:`~faceledger.batch.archive`: a video archive, one task per video, identified here;
- :mod:`~faceledger.batch.speech`: the speech model a video worker loads (driver's hash).

A pipeline like ``video``: it receives what it needs (an engine spec, an identify
callable) and never imports the service or a front; the service or the CLI wires it.
Ray is imported only when ``--ray`` is used: by ``cluster`` on the driver (the others get
the module from it) and inside the worker actors.
"""
