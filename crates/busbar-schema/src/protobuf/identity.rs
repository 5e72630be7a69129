//! What makes two PROTOBUF schema texts the same schema: their tokens. Comments and the
//! whitespace between tokens do not count (as in Confluent, whose canonical form is the schema
//! printed again from its parse); string literals are kept exactly. A base64 descriptor is
//! its base64 without line breaks (`/` is a base64 character there, never a comment). The text
//! served back stays as submitted.

/// `text` as its tokens: comments dropped, one space only between two word tokens
/// (`message  A {  int32 x = 1; } // c` → `message A{int32 x=1;}`).
pub fn identity_text(text: &str) -> String {
    if let Some(base64) = super::parse::base64_text(text) {
        return base64;
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    // A space was skipped since the last token: needed if two word characters meet.
    let mut gap = false;
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                gap = true;
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut star = false;
                for c in chars.by_ref() {
                    if star && c == '/' {
                        break;
                    }
                    star = c == '*';
                }
                gap = true;
            }
            c if c.is_whitespace() => gap = true,
            '"' | '\'' => {
                out.push(c);
                let mut escaped = false;
                for s in chars.by_ref() {
                    out.push(s);
                    if escaped {
                        escaped = false;
                    } else if s == '\\' {
                        escaped = true;
                    } else if s == c {
                        break;
                    }
                }
                gap = false;
            }
            c => {
                let word = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
                if gap && out.chars().last().is_some_and(word) && word(c) {
                    out.push(' ');
                }
                out.push(c);
                gap = false;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::identity_text;

    #[test]
    fn comments_and_spacing_do_not_count_and_strings_do() {
        let a = "syntax = \"proto3\";\npackage shop;\n\n// An order.\nmessage Order {\n  string id = 1; /* the key */\n  int32 qty = 2;\n}\n";
        let b = "syntax=\"proto3\"; package shop; message Order{string id=1;int32 qty=2;}";
        assert_eq!(identity_text(a), identity_text(b));
        assert_eq!(
            identity_text(b),
            "syntax=\"proto3\";package shop;message Order{string id=1;int32 qty=2;}"
        );
        // Inside a string, spaces and comment marks are content.
        let c = "option (x) = \"a  // b\"; message M{}";
        assert_eq!(identity_text(c), "option(x)=\"a  // b\";message M{}");
        assert_ne!(
            identity_text("message M { int32 a = 1; }"),
            identity_text("message M { int32 b = 1; }")
        );
        // Tokens that only a space separates stay apart.
        assert_eq!(identity_text("repeated  int32 a=1;"), "repeated int32 a=1;");
        // A base64 descriptor is not tokenized: `//` is data there.
        assert_ne!(identity_text("CgF4//8BEgF5"), identity_text("CgF4//8BEgF6"));
        assert_eq!(identity_text("CgF4\n//8BEgF5\n"), "CgF4//8BEgF5");
        let escaped = "option (y) = \"q\\\"  r\";";
        assert_eq!(identity_text(escaped), "option(y)=\"q\\\"  r\";");
    }
}
