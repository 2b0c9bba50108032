"""`python -m cli ...` = `olymp ...`; what torchrun launches: torchrun --nproc-per-node 4 -m cli extract ..."""

from cli.app import main

main()
