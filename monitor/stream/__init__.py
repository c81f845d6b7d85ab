"""The Kafka stream: the consumer loop, micro-batches, validation, dead letters, rebalances, the idempotent sink
(the write path), isolation of poison messages, the crash guard, riding out outages, health states, consumer
statistics and heartbeat, replay of news files, and the embedded broker.

May import: ``monitor.alerts``, ``monitor.signals``, ``monitor.scoring``, ``finetune``, ``monitor.core``,
``schemas``. Code that only watches the stream (the benchmark) attaches through the sink's commit observers, never
by being imported here.
"""
