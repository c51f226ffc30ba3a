"""What a dataset is used for: ML task views and splits (``ml``), baselines scored against the seed's
targets (``evaluation``), model-independent root-cause methods and RCAEval's case layout. A model's
own methods live with the model.
"""
