from streamward.cli import main

main()
