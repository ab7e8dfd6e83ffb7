"""Running models: train, evaluate and predict, on the device and precision a runtime sets."""
