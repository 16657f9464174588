"""The HTTP front (FastAPI): thin routes over :class:`faceledger.service.FaceService`."""
