from tests.apiemu.server import main

main()
