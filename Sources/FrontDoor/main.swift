runFrontDoor()
