"""Packaging for txhyco.

``twisted/plugins`` has no ``__init__.py`` (Twisted's plugin convention), so
``find_packages`` cannot see it; it is listed by hand, and the drop-ins ship
as a namespace portion of the ``twisted.plugins`` package.
"""
from setuptools import find_packages, setup

setup(
    name="txhyco",
    version="0.1.0.dev0",
    description="Azure Relay Hybrid Connections for Twisted and Autobahn, with a local relay",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["txhyco", "txhyco.*"]) + ["twisted.plugins"],
    # An explicit root makes `pip install -e .` put the project directory on
    # sys.path (a plain .pth) instead of an import hook; Twisted finds plugin
    # drop-ins only by scanning sys.path for twisted/plugins directories.
    package_dir={"": "."},
    package_data={"twisted.plugins": ["txhyco_*.py"], "txhyco.inspector": ["static/*"]},
    # The floors of Twisted, Autobahn, h11, pyOpenSSL and service-identity are
    # the oldest versions the whole suite passes with on Python 3.11: `make
    # test-oldest` (run by .ci/run) installs exactly those, from
    # tests/oldest-constraints.txt, which says what set each. Keep both in step.
    install_requires=[
        "twisted>=21.2",
        "autobahn>=22.5.1",
        "h11>=0.11",
        "httptools>=0.6",
        "pyopenssl>=22.1",
        "service-identity>=18.1",
        "idna",
        "prometheus-client>=0.20",
        "wsaccel>=0.6",
        "rich>=13",
        "shtab>=1.7",
    ],
    extras_require={
        # Entra ID (Azure AD): azure-identity credentials for listeners and
        # senders, PyJWT for the local relay's [entraId] token verification.
        "azure": [
            "azure-identity>=1.12",
            "pyjwt>=2.4",
        ],
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "klein>=23.0",
            "selenium>=4.20",
            "azure-identity>=1.12",
            "pyjwt>=2.4",
        ],
        "bench": [
            "matplotlib>=3.8",
            "psutil>=5.9",
        ],
        # A relay cluster node (txhyco relay --cluster) keeps its routing state in
        # Redis through txredisapi: Twisted-native, maintained, and only needed there.
        "cluster": [
            "txredisapi>=1.6",
        ],
    },
    entry_points={"console_scripts": ["txhyco = txhyco.cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Internet",
    ],
)
