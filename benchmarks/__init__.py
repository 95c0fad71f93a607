"""Commands that measure the product and print numbers (``lookalike bench …``).

The product never imports this package: ``lookalike bench`` loads it on demand, and it alone
needs SciPy (the ``bench`` extra).
"""
