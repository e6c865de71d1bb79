"""Static files the worker serves (the ``/ops`` wall screen); a package so wheels ship them."""
