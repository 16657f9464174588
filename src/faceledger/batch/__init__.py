"""Batch work on a Ray cluster: enrolment images and video archives, one engine per worker.

- :mod:`~faceledger.batch.types`: what crosses processes (no Ray): engine spec, image
  jobs, embedded images, the ``Embedder`` protocol the service takes;
- :mod:`~faceledger.batch.cluster`: connecting the driver to ``--ray ADDRESS``;
- :mod:`~faceledger.batch.embedding`: enrolment chunks embedded by worker actors;
- :mod:`~faceledger.batch.archive`: a video archive, one task per video, identified here;
- :mod:`~faceledger.batch.speech`: the speech model a video worker loads (driver's hash).

A pipeline like ``video``: it receives what it needs (an engine spec, an identify
callable) and never imports the service or a front; the service or the CLI wires it.
Ray is imported only by ``cluster``, ``embedding`` and ``archive``, when ``--ray`` is used.
"""
