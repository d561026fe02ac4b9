"""``vidda adapt``: adapt a trained model to the user's own unlabelled video."""
