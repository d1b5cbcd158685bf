"""python -m calico.bgp"""

from calico.bgp.main import main

main()
