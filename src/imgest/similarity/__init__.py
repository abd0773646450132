"""Similar images: embeddings, vector indexes and near-duplicate groups."""
