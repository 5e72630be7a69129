//! A certificate's subject as Kafka names it: the RFC 2253 distinguished name (most specific RDN
//! first, `,` between RDNs with no space, `+` inside a multi-valued RDN, RFC 2253 escapes), as
//! Java's `X500Principal.getName()` prints it, and the subject's common name. Rust X.509 printers
//! usually follow ASN.1 order and separate with `", "`; ACLs written for Kafka use this form.
//!
//! Only the subject of a certificate rustls already verified is read, with a small DER reader:
//! anything malformed gives `None`, never a panic.

/// Known attribute types (OID in dotted form) and their RFC 2253 / RFC 4514 keywords.
const KEYWORDS: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.25", "DC"),
];

/// One attribute of a name: its type (dotted OID), value tag and bytes, and its whole DER.
struct Attr<'a> {
    oid: String,
    tag: u8,
    value: &'a [u8],
    der: &'a [u8],
}

/// One DER element: (tag, contents, the whole element, what follows it).
type Element<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// Reads one DER element at the start of `input`.
fn tlv(input: &[u8]) -> Option<Element<'_>> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some((tag, &rest[..len], &input[..header + len], &rest[len..]))
}

/// Dotted form of an OBJECT IDENTIFIER's contents.
fn oid_text(bytes: &[u8]) -> Option<String> {
    let (&first, rest) = bytes.split_first()?;
    let mut parts = vec![
        (first / 40).min(2) as u64,
        first as u64 - 40 * (first / 40).min(2) as u64,
    ];
    let mut acc: u64 = 0;
    for &b in rest {
        acc = acc.checked_mul(128)? | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            parts.push(acc);
            acc = 0;
        }
    }
    let text: Vec<String> = parts.iter().map(u64::to_string).collect();
    Some(text.join("."))
}

/// The subject's RDNs in ASN.1 order (least specific first), each a list of attributes.
fn subject(cert_der: &[u8]) -> Option<Vec<Vec<Attr<'_>>>> {
    let (0x30, cert, _, _) = tlv(cert_der)? else {
        return None;
    };
    let (0x30, mut tbs, _, _) = tlv(cert)? else {
        return None;
    };
    // [0] version (optional), serial, signature, issuer, validity, then subject.
    let (tag, _, _, rest) = tlv(tbs)?;
    if tag == 0xa0 {
        tbs = rest;
    }
    for _ in 0..4 {
        tbs = tlv(tbs)?.3;
    }
    let (0x30, mut name, _, _) = tlv(tbs)? else {
        return None;
    };
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (0x31, mut set, _, rest) = tlv(name)? else {
            return None;
        };
        name = rest;
        let mut rdn = Vec::new();
        while !set.is_empty() {
            let (0x30, atv, _, rest) = tlv(set)? else {
                return None;
            };
            set = rest;
            let (0x06, oid, _, value) = tlv(atv)? else {
                return None;
            };
            let (tag, value, der, _) = tlv(value)?;
            rdn.push(Attr {
                oid: oid_text(oid)?,
                tag,
                value,
                der,
            });
        }
        rdns.push(rdn);
    }
    Some(rdns)
}

/// A string value's text; `None` for a type that is not a string.
fn text(tag: u8, v: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, NumericString, VisibleString
        0x0c | 0x13 | 0x16 | 0x12 | 0x1a => String::from_utf8(v.to_vec()).ok(),
        // TeletexString: read as Latin-1, as most implementations do
        0x14 => Some(v.iter().map(|&b| b as char).collect()),
        // BMPString
        0x1e if v.len().is_multiple_of(2) => {
            let units: Vec<u16> = v
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString
        0x1c if v.len().is_multiple_of(4) => v
            .chunks(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// RFC 2253 §2.4 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One attribute as RFC 2253 prints it: `KEYWORD=value`, or `OID=#hex` for an unknown type or a
/// value that is not a string.
fn attr_text(a: &Attr<'_>) -> String {
    let keyword = KEYWORDS.iter().find(|(oid, _)| *oid == a.oid).map(|k| k.1);
    match (keyword, text(a.tag, a.value)) {
        (Some(k), Some(v)) => format!("{k}={}", escape(&v)),
        _ => {
            let hex: String = a.der.iter().map(|b| format!("{b:02x}")).collect();
            format!("{}=#{hex}", keyword.unwrap_or(&a.oid))
        }
    }
}

/// The subject DN in RFC 2253 form, most specific RDN first (`CN=alice,OU=eng,O=Acme,C=DE`).
pub fn subject_dn(cert_der: &[u8]) -> Option<String> {
    let rdns = subject(cert_der)?;
    let parts: Vec<String> = rdns
        .iter()
        .rev()
        .map(|rdn| rdn.iter().map(attr_text).collect::<Vec<_>>().join("+"))
        .collect();
    Some(parts.join(","))
}

/// The subject's most specific common name (unescaped), if it has one.
pub fn common_name(cert_der: &[u8]) -> Option<String> {
    let rdns = subject(cert_der)?;
    rdns.iter()
        .rev()
        .flatten()
        .find(|a| a.oid == "2.5.4.3")
        .and_then(|a| text(a.tag, a.value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn cert(dn: &[(DnType, &str)]) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut name = DistinguishedName::new();
        for (t, v) in dn {
            name.push(t.clone(), *v);
        }
        params.distinguished_name = name;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_dn_is_printed_most_specific_first_without_spaces() {
        // rcgen writes the attributes in the order pushed: C first (least specific), CN last.
        let der = cert(&[
            (DnType::CountryName, "DE"),
            (DnType::OrganizationName, "Acme, Inc"),
            (DnType::OrganizationalUnitName, "eng"),
            (DnType::CommonName, "alice"),
        ]);
        assert_eq!(
            subject_dn(&der).unwrap(),
            "CN=alice,OU=eng,O=Acme\\, Inc,C=DE"
        );
        assert_eq!(common_name(&der).unwrap(), "alice");
    }

    #[test]
    fn special_characters_and_unknown_types_follow_rfc_2253() {
        assert_eq!(escape(" #a+b;c "), "\\ #a\\+b\\;c\\ ");
        assert_eq!(escape("#x"), "\\#x");
        let der = cert(&[(DnType::CustomDnType(vec![1, 2, 3, 4]), "x")]);
        let dn = subject_dn(&der).unwrap();
        assert!(dn.starts_with("1.2.3.4=#"), "{dn}");
        assert_eq!(common_name(&der), None);
    }

    #[test]
    fn malformed_input_gives_none() {
        let der = cert(&[(DnType::CommonName, "bob")]);
        for cut in [0, 1, 5, 40, der.len() / 2] {
            assert_eq!(subject_dn(&der[..cut]), None);
        }
        assert_eq!(subject_dn(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
