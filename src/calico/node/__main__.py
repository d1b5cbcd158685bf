"""python -m calico.node"""

from calico.node.main import main

main()
