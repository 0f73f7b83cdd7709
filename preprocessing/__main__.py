"""`python -m preprocessing features ...`"""

from preprocessing.cli import main

main()
