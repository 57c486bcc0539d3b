"""ROS 2 node for FC-CLIP segmentation, and the package's generated interfaces (msg, srv).

The interfaces generated from msg/ and srv/ are installed into this same Python package.
When the source tree shadows the installed package (running from a checkout), the path
extension below still finds the generated modules in the installed copy.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
