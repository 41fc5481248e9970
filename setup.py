"""Packaging for the embedding job. This file is the single source of its dependencies:
Dataflow workers install from it. Exact, tested versions live in constraints.txt."""

from setuptools import find_packages, setup

setup(
    name="bert-embedding-job",
    version="0.1.0",
    description="Distributed batch text embedding with BERT on Apache Beam, written as Parquet",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["encoders", "encoders.*", "pipeline", "pipeline.*"]),
    install_requires=[
        "apache-beam[gcp]>=2.77,<2.78",
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        "tensorflow-hub>=0.16.1,<0.17",
        # transformers 5 dropped the TensorFlow classes (TFBertModel, TFBertMainLayer).
        "transformers>=4.57,<5",
        "tokenizers>=0.22,<0.23",
        "safetensors>=0.4.5",
        "huggingface-hub>=0.34,<1",
        "h5py>=3.10",
        "numpy>=1.26",
        "pyarrow>=14,<26",
        "fsspec>=2024.2",
        "zstandard>=0.22",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100", "ruff>=0.6"],
        # --hub_preprocessor: TF Hub preprocessing models use TF Text ops (its minor version follows TensorFlow's).
        "hub-preprocessing": ["tensorflow-text>=2.21,<2.22"],
        # GPU memory from the driver (NVML) for --max_tokens_per_batch auto; without it, from the GPU's name.
        "gpu": ["nvidia-ml-py>=12"],
    },
    entry_points={"console_scripts": ["embed-texts=pipeline.cli:main"]},
)
