"""textlstm: an LSTM text classifier served by a fleet of Celery workers with results in SQL.

Importing this package touches no disk, network or GPU, and does not import torch.
"""

__version__ = "0.1.0"
