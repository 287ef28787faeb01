"""Python quick start: load data, build a network from named blocks, train, read the history."""

import babysit as bs

data = bs.prepare(bs.load_dataset("digits"))  # standardisation fitted on the training split only
model = bs.build_model("mlp", data.input_shape, data.num_classes, hidden=(100, 100), activation="relu", init="he")
result = bs.fit(model, data, bs.Recipe(optimizer="adam", lr=1e-3, epochs=10))

print(f"test accuracy {result.test_accuracy:.3f} after {result.epochs} epochs")
print("val accuracy per epoch:", [round(a, 3) for a in result.history.series("val_accuracy")])
