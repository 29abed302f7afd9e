// The download page's crypto and packaging: HPKE (RFC 9180) from @hpke/core on WebCrypto, zip from fflate.
export { CipherSuite, DhkemX25519HkdfSha256, HkdfSha256, Aes256Gcm } from "@hpke/core";
export { zipSync, strToU8 } from "fflate";
