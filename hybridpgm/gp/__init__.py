"""GPyTorch layers: deep kernel learning, GP-LSTM, wide-network kernels."""

__all__: list[str] = []
