"""Fine-tuning of finpulse's multi-task model (document sentiment, NER, entity sentiment; one encoder pass).

Modules: ``args`` (CLI/config dataclasses), ``data``/``data_conll``/``data_entities`` (sources -> examples),
``features`` (tokens and spans), ``model`` (encoder + heads), ``train``, ``evaluate``/``metrics``, ``export``
(versioned directory and model card), ``predictor`` (serving through monitor.scoring.scorer), ``registry``
(model_version table), ``bench`` (bf16 vs fp32 speed), ``cli`` (``finpulse train|eval|train-bench``).
"""
