from cdrgate.cli import main

main()
