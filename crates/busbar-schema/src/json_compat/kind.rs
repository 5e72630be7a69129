//! The incompatible changes the JSON Schema diff can report, named as Confluent's `Difference.Type`
//! (STRICT policy) so registry users see the names they know, plus busbar's own for references.
//! Compatible changes are never recorded: a comparison is compatible exactly when it reports nothing.

macro_rules! kinds {
    ($($variant:ident => $name:literal, $what:literal;)*) => {
        /// One kind of incompatible change.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Kind {
            $($variant,)*
        }

        impl Kind {
            /// Confluent's name for the change (`Difference.Type`), or busbar's where Confluent has none.
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }

            /// What the change means for a reader of data written under the other schema.
            pub(crate) fn description(self) -> &'static str {
                match self {
                    $(Kind::$variant => $what,)*
                }
            }
        }
    };
}

kinds! {
    SchemaAdded => "SCHEMA_ADDED",
        "the reader schema constrains a value the writer schema leaves unconstrained";
    TypeNarrowed => "TYPE_NARROWED",
        "the reader schema accepts only integers where the writer schema accepts any number";
    TypeChanged => "TYPE_CHANGED",
        "the type differs between the reader and the writer schema";
    MaxLengthAdded => "MAX_LENGTH_ADDED",
        "the reader schema adds maxLength, absent from the writer schema";
    MaxLengthDecreased => "MAX_LENGTH_DECREASED",
        "maxLength is smaller in the reader schema than in the writer schema";
    MinLengthAdded => "MIN_LENGTH_ADDED",
        "the reader schema adds minLength, absent from the writer schema";
    MinLengthIncreased => "MIN_LENGTH_INCREASED",
        "minLength is larger in the reader schema than in the writer schema";
    PatternAdded => "PATTERN_ADDED",
        "the reader schema adds a pattern, absent from the writer schema";
    PatternChanged => "PATTERN_CHANGED",
        "the pattern differs between the reader and the writer schema";
    MaximumAdded => "MAXIMUM_ADDED",
        "the reader schema adds maximum, absent from the writer schema";
    MaximumDecreased => "MAXIMUM_DECREASED",
        "maximum is smaller in the reader schema than in the writer schema";
    MinimumAdded => "MINIMUM_ADDED",
        "the reader schema adds minimum, absent from the writer schema";
    MinimumIncreased => "MINIMUM_INCREASED",
        "minimum is larger in the reader schema than in the writer schema";
    ExclusiveMaximumAdded => "EXCLUSIVE_MAXIMUM_ADDED",
        "the reader schema adds exclusiveMaximum, absent from the writer schema";
    ExclusiveMaximumDecreased => "EXCLUSIVE_MAXIMUM_DECREASED",
        "exclusiveMaximum is smaller in the reader schema than in the writer schema";
    ExclusiveMinimumAdded => "EXCLUSIVE_MINIMUM_ADDED",
        "the reader schema adds exclusiveMinimum, absent from the writer schema";
    ExclusiveMinimumIncreased => "EXCLUSIVE_MINIMUM_INCREASED",
        "exclusiveMinimum is larger in the reader schema than in the writer schema";
    MultipleOfAdded => "MULTIPLE_OF_ADDED",
        "the reader schema adds multipleOf, absent from the writer schema";
    MultipleOfExpanded => "MULTIPLE_OF_EXPANDED",
        "multipleOf in the reader schema is a multiple of the writer schema's";
    MultipleOfChanged => "MULTIPLE_OF_CHANGED",
        "multipleOf in the reader schema does not divide the writer schema's";
    RequiredAttributeAdded => "REQUIRED_ATTRIBUTE_ADDED",
        "the reader schema requires a property (without a default) that the writer schema makes optional";
    DependencyArrayAdded => "DEPENDENCY_ARRAY_ADDED",
        "the reader schema adds a property dependency, absent from the writer schema";
    DependencyArrayExtended => "DEPENDENCY_ARRAY_EXTENDED",
        "the reader schema's property dependency names more properties than the writer schema's";
    DependencyArrayChanged => "DEPENDENCY_ARRAY_CHANGED",
        "the property dependency differs between the reader and the writer schema";
    DependencySchemaAdded => "DEPENDENCY_SCHEMA_ADDED",
        "the reader schema adds a schema dependency, absent from the writer schema";
    MaxPropertiesAdded => "MAX_PROPERTIES_ADDED",
        "the reader schema adds maxProperties, absent from the writer schema";
    MaxPropertiesDecreased => "MAX_PROPERTIES_DECREASED",
        "maxProperties is smaller in the reader schema than in the writer schema";
    MinPropertiesAdded => "MIN_PROPERTIES_ADDED",
        "the reader schema adds minProperties, absent from the writer schema";
    MinPropertiesIncreased => "MIN_PROPERTIES_INCREASED",
        "minProperties is larger in the reader schema than in the writer schema";
    AdditionalPropertiesRemoved => "ADDITIONAL_PROPERTIES_REMOVED",
        "the reader schema forbids additional properties that the writer schema allows";
    AdditionalPropertiesNarrowed => "ADDITIONAL_PROPERTIES_NARROWED",
        "the reader schema constrains additional properties that the writer schema leaves open";
    PropertyAddedToOpenContentModel => "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
        "the reader schema adds a property that the writer schema's open content model allows with any value";
    RequiredPropertyAddedToUnopenContentModel => "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
        "the reader schema adds a required property (without a default) that the writer schema does not have";
    PropertyRemovedFromClosedContentModel => "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
        "the reader schema's closed content model lacks a property of the writer schema";
    PropertyRemovedNotCoveredByPartiallyOpenContentModel =>
        "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        "the reader schema lacks a property of the writer schema and its partially open content model does not accept the writer's values";
    PropertyAddedNotCoveredByPartiallyOpenContentModel =>
        "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        "the reader schema adds a property whose schema does not accept what the writer schema's partially open content model allows";
    MaxItemsAdded => "MAX_ITEMS_ADDED",
        "the reader schema adds maxItems, absent from the writer schema";
    MaxItemsDecreased => "MAX_ITEMS_DECREASED",
        "maxItems is smaller in the reader schema than in the writer schema";
    MinItemsAdded => "MIN_ITEMS_ADDED",
        "the reader schema adds minItems, absent from the writer schema";
    MinItemsIncreased => "MIN_ITEMS_INCREASED",
        "minItems is larger in the reader schema than in the writer schema";
    MaxContainsAdded => "MAX_CONTAINS_ADDED",
        "the reader schema adds maxContains, absent from the writer schema";
    MaxContainsDecreased => "MAX_CONTAINS_DECREASED",
        "maxContains is smaller in the reader schema than in the writer schema";
    MinContainsAdded => "MIN_CONTAINS_ADDED",
        "the reader schema adds minContains, absent from the writer schema";
    MinContainsIncreased => "MIN_CONTAINS_INCREASED",
        "minContains is larger in the reader schema than in the writer schema";
    UniqueItemsAdded => "UNIQUE_ITEMS_ADDED",
        "the reader schema requires unique items, the writer schema does not";
    AdditionalItemsRemoved => "ADDITIONAL_ITEMS_REMOVED",
        "the reader schema forbids additional items that the writer schema allows";
    AdditionalItemsNarrowed => "ADDITIONAL_ITEMS_NARROWED",
        "the reader schema constrains additional items that the writer schema leaves open";
    UnevaluatedItemsRemoved => "UNEVALUATED_ITEMS_REMOVED",
        "the reader schema forbids unevaluated items that the writer schema allows";
    UnevaluatedItemsNarrowed => "UNEVALUATED_ITEMS_NARROWED",
        "the reader schema constrains unevaluated items that the writer schema leaves open";
    ItemAddedToOpenContentModel => "ITEM_ADDED_TO_OPEN_CONTENT_MODEL",
        "the reader schema adds a tuple item that the writer schema's open content model allows with any value";
    ItemRemovedFromClosedContentModel => "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL",
        "the reader schema's closed tuple lacks an item of the writer schema";
    ItemRemovedNotCoveredByPartiallyOpenContentModel =>
        "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        "the reader schema lacks a tuple item of the writer schema and its additional items schema does not accept the writer's values";
    ItemAddedNotCoveredByPartiallyOpenContentModel =>
        "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        "the reader schema adds a tuple item whose schema does not accept what the writer schema's additional items schema allows";
    EnumArrayNarrowed => "ENUM_ARRAY_NARROWED",
        "the reader schema's enum lacks values of the writer schema's";
    EnumArrayChanged => "ENUM_ARRAY_CHANGED",
        "the enum or const values differ between the reader and the writer schema";
    CombinedTypeChanged => "COMBINED_TYPE_CHANGED",
        "the combination (allOf, anyOf, oneOf) differs between the reader and the writer schema";
    ProductTypeExtended => "PRODUCT_TYPE_EXTENDED",
        "the reader schema's allOf has more subschemas than the writer schema's";
    SumTypeNarrowed => "SUM_TYPE_NARROWED",
        "the reader schema's anyOf or oneOf has fewer subschemas than the writer schema's";
    CombinedTypeSubschemasChanged => "COMBINED_TYPE_SUBSCHEMAS_CHANGED",
        "the subschemas of the combination cannot be paired so that each reader subschema reads its writer subschema";
    NotTypeExtended => "NOT_TYPE_EXTENDED",
        "the reader schema's not excludes values the writer schema's not allows";
    ReferenceUnresolved => "REFERENCE_UNRESOLVED",
        "a $ref cannot be resolved within the schema and its references, and the other schema differs";
    ReferenceCycle => "REFERENCE_CYCLE",
        "a $ref chain loops without reaching a schema";
}
