"""``finpulse demo`` (``make demo``): the whole product on one machine. A tool built on the product: it may import
any room below ``monitor.app``, and nothing but :mod:`monitor.app` imports it.
"""
