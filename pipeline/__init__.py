"""cxstream: omnichannel customer-interaction streaming for a retail bank."""

__version__ = "0.1.0"
