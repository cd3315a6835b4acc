"""Integrations with other engines, each importing its engine only when used.

- :mod:`redaes_lite.integrations.ray`: score a Ray Data ``Dataset`` of image paths or bytes on a cluster
  (``pip install "redaes-lite[ray]"``).
"""
