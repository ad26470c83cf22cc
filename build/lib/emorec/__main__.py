from emorec.cli import main

main()
