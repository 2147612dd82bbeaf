package auth

// Known-answer vectors. The wallee and cavage ones were computed outside Go
// (python3 hmac/hashlib/base64) over the strings given in each test; the
// SigV4 one is "get-vanilla" from the AWS SigV4 test suite; the RFC 9421
// one is Appendix B.2.5.
const (
	knownMAC    = "qtqQPv1pQvMU2AfYRaXoST1SMtkvv/Wtll9M5U6AlIAjbsBRtuQx+U2jDvvaAfkkNsN/DjGJ/baQRhvglPvV7g=="
	knownJWT    = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsInZlciI6MX0.eyJzdWIiOiI0NzExIiwiaWF0IjoxNzQxOTY0OTY2LCJyZXF1ZXN0UGF0aCI6Ii9hcGkvdjIuMC9zcGFjZXMvMSIsInJlcXVlc3RNZXRob2QiOiJHRVQifQ.wOEKsws25xk1lr6IwiBxN4JxiIS5wjiKxpm6PbkS1ok"
	knownCavage = "r26uWnksnceKs20QwV18tDp5eOVZw+yhfIH+cbMZSjVZGVLU+k3zxXDXUomAwVzOeizdJ984R2vaKH0jIXA7+A=="

	awsExampleSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	awsGetVanillaSig = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"

	rfc9421SharedSecret = "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ=="
)
