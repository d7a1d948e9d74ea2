"""Install ppfreeze: ``pip install -r requirements.txt && pip install -e .``"""
from setuptools import find_packages, setup

setup(
    name="ppfreeze",
    version="0.1.0",
    description="PaddleClas-style config-driven classification and retrieval training with correct, cheap freezing",
    packages=find_packages(include=["ppfreeze", "ppfreeze.*"]),
    python_requires=">=3.8",
    # paddlepaddle (CPU) or paddlepaddle-gpu is deliberately not pinned here: either satisfies us.
    install_requires=["pyyaml>=6.0", "numpy>=1.24", "opencv-python-headless>=4.8", "Pillow>=9.1", "visualdl>=2.5", "faiss-cpu>=1.7"],
    extras_require={"onnx": ["paddle2onnx>=2.0", "onnxruntime>=1.16"], "test": ["pytest>=8", "hypothesis>=6.100"]},
)
