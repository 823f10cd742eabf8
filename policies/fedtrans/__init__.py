"""Multi-model FL policies (FedAvg, size-tiered, FedTrans): decide which client trains which model."""
