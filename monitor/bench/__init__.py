"""``finpulse bench``: the performance benchmark (model-only, end-to-end, naive baselines, soak, latency). A tool
built on the product: it may import any room below ``monitor.app``, and nothing but :mod:`monitor.app` imports it.
It observes the consumer through the sink's commit observers and the database.
"""
