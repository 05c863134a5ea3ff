"""The numerical core: the lin-RFM/IRLS engine, the bias baseline and rating fits on top."""
