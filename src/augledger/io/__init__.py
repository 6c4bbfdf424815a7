"""Bytes in and out: a :class:`~augledger.io.store.Store` every path goes through, and a codec per modality.

* :mod:`~augledger.io.store`: ``Store`` (read, write atomically, list, exists, remove) and
  ``LocalStore``, which refuses paths that leave its root.
* :mod:`~augledger.io.codecs`: the ``Codec`` interface and the codec registry by modality.
* :mod:`~augledger.io.image`: the image codec (decode with quarantine rules, encode PNG/JPEG/WebP).
"""
