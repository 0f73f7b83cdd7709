from generation.cli import main

main()
